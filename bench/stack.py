"""Processes the benchmarks run against: the whole stack (`eventforge up`) and the no-op server."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg

from bench import procs
from eventforge.runtime.emulator import free_port
from eventforge.runtime.processes import die_with_parent
from harness.workspace import dsn

_READY = re.compile(r"^ready in ([0-9.]+)s")


def _clean_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment without EventForge or endpoint settings, plus `overrides`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("EVENTFORGE_", "OTEL_"))
        and name not in ("DATABASE_URL", "AWS_ENDPOINT_URL")
    }
    env.update(overrides)
    return env


@dataclass
class Stack:
    """`eventforge up` in a subprocess: its own emulator, the given database, free ports."""

    data_dir: Path
    database_url: str
    api_processes: int = 1
    """EVENTFORGE_API_PROCESSES of the stack (`make up`'s default: 1)."""
    orders_addr: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    files_addr: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    notifier_addr: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    reported_ready_s: float | None = None
    """What `eventforge up` printed ("ready in N s"), from its own start."""

    def environment(self) -> dict[str, str]:
        return _clean_environment(
            {
                "DATABASE_URL": self.database_url,
                "EVENTFORGE_DATA_DIR": str(self.data_dir),
                "EVENTFORGE_EMULATOR_PORT": str(free_port()),
                "EVENTFORGE_ORDERS_ADDR": self.orders_addr,
                "EVENTFORGE_FILES_ADDR": self.files_addr,
                "EVENTFORGE_NOTIFIER_ADDR": self.notifier_addr,
                # The dashboard is part of what `make up` runs (and of its memory), on a free
                # port so a developer's own stack on the default one does not clash.
                "EVENTFORGE_DASHBOARD_ADDR": f"127.0.0.1:{free_port()}",
                "EVENTFORGE_API_PROCESSES": str(self.api_processes),
            }
        )

    def start(self, timeout: float = 90.0) -> float:
        """Run `eventforge up` and return the seconds from spawning it to all SERVING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines: queue.Queue[str | None] = queue.Queue()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventforge.cli", "up"],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # a prctl call: async-signal-safe
        )
        assert self.process.stdout is not None
        threading.Thread(
            target=_pump, args=(self.process.stdout, lines, self.output), daemon=True
        ).start()
        deadline = started + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                self.stop()
                line = ""
            if line == "":
                raise RuntimeError(f"eventforge up not ready after {timeout:.0f}s:\n{self.log()}")
            if line is None:
                raise RuntimeError(f"eventforge up exited:\n{self.log()}")
            ready = _READY.match(line)
            if ready:
                self.reported_ready_s = float(ready.group(1))
                return time.perf_counter() - started

    def pids(self) -> list[int]:
        """The `up` process and everything it started (emulator and service processes)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return procs.descendants(self.process.pid)

    def api_pids(self, service: str) -> list[int]:
        """The processes serving `service`'s API (locally with its worker and relay)."""
        return [
            pid
            for pid in self.pids()
            if short_name(procs.command_line(pid)).split("-")[:2] == [service, "api"]
        ]

    def memory(self) -> list[procs.ProcessMemory]:
        if self.process is None:
            return []
        return procs.memory_of_tree(self.process.pid, short_name)

    def log(self) -> str:
        return "".join(self.output[-40:])

    def backlog(self) -> dict[str, int]:
        """How far orders' asynchronous side lags: unpublished outbox rows, orders still PENDING."""
        with psycopg.connect(dsn(self.database_url), connect_timeout=5) as connection:
            row = connection.execute(
                "SELECT (SELECT count(*) FROM orders.outbox WHERE published_at IS NULL),"
                " (SELECT count(*) FROM orders.orders WHERE status = 'PENDING'),"
                " (SELECT count(*) FROM orders.orders)"
            ).fetchone()
        assert row is not None
        return {"unpublished_outbox_rows": row[0], "pending_orders": row[1], "orders": row[2]}

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM `up` (it stops its children); kill the whole group if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _pump(stream: IO[str], lines: queue.Queue[str | None], keep: list[str]) -> None:
    for line in stream:
        keep.append(line)
        lines.put(line)
    lines.put(None)


def short_name(command: str) -> str:
    if any(name in command for name in ("emulator_server", "ministack_server")):
        return "emulator"
    words = command.split()
    if words[-1:] in (["dashboard"], ["scheduler"]):
        return words[-1]
    if "serve" in words:
        at = words.index("serve")
        return "-".join(words[at + 1 :])
    if words[-1:] == ["up"]:
        return "up (supervisor)"
    return command[:40]


@dataclass
class NoopServer:
    """`python -m bench.noop_server` in a subprocess."""

    workers: int = 16
    process: subprocess.Popen[str] | None = None
    address: str = ""

    def start(self, timeout: float = 20.0) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.noop_server", "--workers", str(self.workers)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # a prctl call: async-signal-safe
        )
        assert self.process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(self.process.stdout, lines, []), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if not line or not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the no-op server did not start ({line!r})")
        self.address = f"127.0.0.1:{int(line.split()[1])}"
        return self.address

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
