"""Processes from /proc: a process tree, its resident memory and its CPU time (Linux only)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None if gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if (PROC / str(pid)).exists():
            found.append(pid)
        todo += children.get(pid, [])
    return sorted(found)


def command_line(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 when it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time consumed so far by the processes (children not included)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (postmaster and backends)."""
    return [
        int(entry.name)
        for entry in PROC.iterdir()
        if entry.name.isdigit() and command_line(int(entry.name)).startswith("postgres")
    ]


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str
    rss_mb: float


def memory_of_tree(
    root: int, name_of: Callable[[str], str] = lambda cmd: cmd
) -> list[ProcessMemory]:
    """RSS of `root` and its descendants, with a short name from each command line."""
    return [
        ProcessMemory(pid, name_of(command_line(pid)), round(rss_bytes(pid) / 2**20, 1))
        for pid in descendants(root)
    ]


def wait_quiet(
    pids: Callable[[], list[int]],
    *,
    below_cores: float = 0.08,
    window: float = 1.0,
    timeout: float = 60.0,
) -> tuple[float, bool]:
    """Wait until the processes use less than `below_cores` CPU over `window` seconds.

    Returns (seconds waited, whether they became quiet before `timeout`).
    """
    started = time.monotonic()
    while True:
        watched = pids()
        before = cpu_seconds(watched)
        time.sleep(window)
        busy = (cpu_seconds(watched) - before) / window
        waited = time.monotonic() - started
        if busy < below_cores:
            return waited, True
        if waited >= timeout:
            return waited, False


@contextlib.contextmanager
def frozen(pids: Iterable[int]) -> Iterator[list[int]]:
    """SIGSTOP the processes for the block (they use no CPU), SIGCONT them after it."""
    stopped: list[int] = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield stopped
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
