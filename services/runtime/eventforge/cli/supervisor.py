"""Start, watch, restart and stop the local stack's processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from eventforge.runtime.processes import die_with_parent


@dataclass
class Child:
    """One supervised process and where its output goes."""

    name: str
    argv: list[str]
    log_path: Path
    niceness: int = 0
    """Added to the process's nice value: background roles yield the CPU to the APIs."""
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_before_exec(self.niceness),
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self.process.poll() if self.process else None

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)

    def close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 20) -> str:
        """The last lines of the process's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Keeps children running: restarts a crashed one, stops all of them together."""

    def __init__(self, env: dict[str, str], max_restarts: int = 5) -> None:
        self.env = env
        self.max_restarts = max_restarts
        self.children: list[Child] = []

    def spawn(self, name: str, argv: list[str], log_path: Path, *, niceness: int = 0) -> Child:
        child = Child(name, argv, log_path, niceness)
        child.start(self.env)
        self.children.append(child)
        return child

    def check(self) -> list[str]:
        """Restart children that died; returns messages about what happened."""
        events = []
        for child in self.children:
            code = child.exited()
            if code is None:
                continue
            if child.restarts >= self.max_restarts:
                raise RuntimeError(f"{child.name} keeps exiting (code {code}):\n{child.tail()}")
            child.close_log()
            child.restarts += 1
            child.start(self.env)
            events.append(f"{child.name} exited with code {code}; restarted (pid {child.pid})")
        return events

    def stop(self, grace: float) -> None:
        """SIGTERM every child, wait up to `grace` seconds, then SIGKILL what is left."""
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.close_log()


def _before_exec(niceness: int) -> Callable[[], None]:
    """What the child runs before its program: die with this process, then lower its priority
    (a prctl and a setpriority call: async-signal-safe)."""
    die = die_with_parent()

    def prepare() -> None:
        if die is not None:
            die()
        if niceness:
            os.nice(niceness)

    return prepare


def python_command(*args: str) -> list[str]:
    """Run the `eventforge` command with this interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "eventforge.cli", *args]


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment plus overrides, for the children."""
    env = dict(os.environ)
    env.update(overrides)
    return env
