"""`eventforge serve SERVICE ROLE…`: several roles as threads of one process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from eventforge.cli import stack
from eventforge.runtime.settings import ServiceName, Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_every_role_runs_until_stop_and_the_process_exits_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running: set[str] = set()
    lock = threading.Lock()

    def role(settings: Settings, service: ServiceName, name: str, stop: threading.Event) -> None:
        with lock:
            running.add(name)
        stop.wait()

    monkeypatch.setattr(stack, "run_role", role)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    code = stack.run_roles(_settings(tmp_path), "orders", ["api", "worker", "relay"], stop)
    assert code == 0
    assert running == {"api", "worker", "relay"}


def test_a_failing_role_stops_the_others_and_the_process_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[str] = []

    def role(settings: Settings, service: ServiceName, name: str, stop: threading.Event) -> None:
        if name == "worker":
            time.sleep(0.1)
            raise RuntimeError("worker broke")
        stop.wait()
        stopped.append(name)

    monkeypatch.setattr(stack, "run_role", role)
    started = time.monotonic()
    code = stack.run_roles(
        _settings(tmp_path), "orders", ["api", "worker", "relay"], threading.Event()
    )
    assert code == 1
    assert sorted(stopped) == ["api", "relay"]
    assert time.monotonic() - started < 5


def test_a_role_that_returns_on_its_own_counts_as_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def role(settings: Settings, service: ServiceName, name: str, stop: threading.Event) -> None:
        if name == "relay":
            return
        stop.wait()

    monkeypatch.setattr(stack, "run_role", role)
    code = stack.run_roles(_settings(tmp_path), "files", ["api", "relay"], threading.Event())
    assert code == 1
