"""`eventforge up` (what `make up` runs) on embedded defaults: everything SERVING, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from eventforge.runtime.emulator import free_port

pytestmark = pytest.mark.integration


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def test_up_serves_every_service_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("orders", "files", "notifier", "emulator")}
    marker = f"EVENTFORGE_TEST_MARKER={tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_URL"))}
    env.update(
        {
            "EVENTFORGE_DATA_DIR": str(tmp_path / "data"),
            "EVENTFORGE_EMULATOR_PORT": str(ports["emulator"]),
            "EVENTFORGE_ORDERS_ADDR": f"127.0.0.1:{ports['orders']}",
            "EVENTFORGE_FILES_ADDR": f"127.0.0.1:{ports['files']}",
            "EVENTFORGE_NOTIFIER_ADDR": f"127.0.0.1:{ports['notifier']}",
            "EVENTFORGE_TEST_MARKER": tmp_path.name,
        }
    )
    output = tmp_path / "up.out"
    with output.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "eventforge.cli", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in output.read_text():
            assert up.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        text = output.read_text()
        for service in ("orders", "files", "notifier"):
            assert f"127.0.0.1:{ports[service]}  SERVING" in text
            with grpc.insecure_channel(f"127.0.0.1:{ports[service]}") as channel:
                services = ProtoReflectionDescriptorDatabase(channel).get_services()
            assert f"eventforge.{service}.v1.{service.capitalize()}Service" in services
            assert "grpc.health.v1.Health" in services
        assert len(_pids_with(marker)) >= 5  # up, emulator, three APIs
    finally:
        stopping = time.monotonic()
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=30)
    assert time.monotonic() - stopping < 10, "Ctrl-C should stop everything within seconds"
    assert code == 0, output.read_text()
    assert "stopped" in output.read_text()
    assert _pids_with(marker) == []


def test_up_reports_a_failed_migration_and_leaves_nothing_running(tmp_path: Path) -> None:
    marker = f"EVENTFORGE_TEST_MARKER={tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_URL"))}
    env.update(
        {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
            "EVENTFORGE_DATA_DIR": str(tmp_path / "data"),
            "EVENTFORGE_EMULATOR_PORT": str(free_port()),
            "EVENTFORGE_TEST_MARKER": tmp_path.name,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "eventforge.cli", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "eventforge migrate failed" in done.stderr
    assert "stopped" in done.stdout
    assert (tmp_path / "data" / "logs" / "migrate.log").exists()
    assert _pids_with(marker) == []
