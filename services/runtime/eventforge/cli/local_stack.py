"""The running local stack, as `eventforge up` records it in its data directory.

`up` writes `<data dir>/stack.json` once it has started its processes and removes it when it
stops. From it:

- the operator commands (`queues`, `dlq …`, `dashboard`) find a running local stack from any
  shell, without `AWS_ENDPOINT_URL` in their environment (`operator_settings`);
- the next `up` recognises a stack that is still running, or processes an earlier `up` left
  behind when it was killed hard, and says how to stop them instead of failing on a port.

A process is recorded with its start time, so a pid the system has since given to another
process is never mistaken for one of ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
import psutil

from eventforge.runtime.settings import Settings, split_address

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class RecordedProcess:
    """A process `up` started (or `up` itself): its name, pid and start time."""

    name: str
    pid: int
    started: float
    """psutil's `create_time()`: seconds since the epoch, as the kernel reports it."""

    @classmethod
    def of(cls, name: str, pid: int) -> RecordedProcess:
        return cls(name, pid, psutil.Process(pid).create_time())

    def alive(self) -> bool:
        """Whether this very process is still running (not just a process with its pid)."""
        try:
            process = psutil.Process(self.pid)
            return (
                abs(process.create_time() - self.started) < 0.01
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


@dataclass(frozen=True)
class StackState:
    """What a running `eventforge up` tells other commands about itself."""

    supervisor: RecordedProcess
    aws_endpoint_url: str | None
    aws_region: str
    name_prefix: str
    addresses: dict[str, str]
    processes: tuple[RecordedProcess, ...] = ()
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / STATE_FILE

    def write(self, data_dir: Path) -> None:
        """Write the state file atomically (readers never see half of it)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.path(data_dir).with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temporary, self.path(data_dir))

    @classmethod
    def read(cls, data_dir: Path) -> StackState | None:
        """The recorded state, or None if there is none (or it is unreadable)."""
        try:
            raw = json.loads(cls.path(data_dir).read_text())
            return cls(
                supervisor=RecordedProcess(**raw["supervisor"]),
                aws_endpoint_url=raw["aws_endpoint_url"],
                aws_region=raw["aws_region"],
                name_prefix=raw["name_prefix"],
                addresses=dict(raw["addresses"]),
                processes=tuple(RecordedProcess(**p) for p in raw["processes"]),
                started_at=raw["started_at"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def remove(data_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            StackState.path(data_dir).unlink()

    @property
    def running(self) -> bool:
        """Whether the `up` that wrote this is still running."""
        return self.supervisor.alive()

    def leftovers(self) -> list[RecordedProcess]:
        """Processes it started that still run (after it was killed hard, say)."""
        return [p for p in self.processes if p.alive()]


def find_running(data_dir: Path) -> StackState | None:
    """The state of the `up` running from `data_dir`, if one is."""
    state = StackState.read(data_dir)
    return state if state is not None and state.running else None


def refuse_to_start_over(data_dir: Path) -> None:
    """Raise ClickException if an `up` of `data_dir` still runs, or left processes behind."""
    state = StackState.read(data_dir)
    if state is None:
        return
    if state.running:
        pid = state.supervisor.pid
        raise click.ClickException(
            f"EventForge is already running from {data_dir} (eventforge up, pid {pid}, since "
            f"{state.started_at}): stop it with Ctrl-C in its terminal or `kill {pid}`"
        )
    left = state.leftovers()
    if left:
        listed = ", ".join(f"{p.name} (pid {p.pid})" for p in left)
        pids = " ".join(str(p.pid) for p in left)
        raise click.ClickException(
            f"an earlier `eventforge up` of {data_dir} was stopped without stopping its "
            f"processes, which still run: {listed}. Stop them with `kill {pids}`, then start again"
        )
    StackState.remove(data_dir)


def holder_of(host: str, port: int) -> str | None:
    """Which process listens on host:port, as `pid N (command line)`, if the OS tells us."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.laddr.ip in (host, f"::ffff:{host}", "0.0.0.0", "::")
            and connection.pid is not None
        ):
            try:
                command = " ".join(psutil.Process(connection.pid).cmdline())[:120]
            except psutil.Error:
                command = "?"
            return f"pid {connection.pid} ({command})"
    return None


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (nothing else does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As a server binds: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def refuse_busy_ports(addresses: Iterable[tuple[str, str]]) -> None:
    """Raise ClickException naming every (name, host:port) that cannot be bound, and by whom."""
    busy = []
    for name, address in addresses:
        host, port = split_address(address)
        if not port_free(host, port):
            holder = holder_of(host, port)
            busy.append(f"{name} {address}: in use" + (f" by {holder}" if holder else ""))
    if busy:
        raise click.ClickException(
            "cannot start, ports in use:\n  "
            + "\n  ".join(busy)
            + "\nstop what holds them, or move EventForge with EVENTFORGE_<NAME>_ADDR / "
            "EVENTFORGE_EMULATOR_PORT"
        )


def aimed(settings: Settings) -> tuple[Settings, str]:
    """`settings` aimed at the stack an operator command should act on, and a phrase naming it.

    In order: `AWS_ENDPOINT_URL` if set; else the local stack running from the data directory;
    else real AWS, through the default credentials.
    """
    if settings.aws_endpoint_url:
        return settings, f"{settings.aws_endpoint_url} (AWS_ENDPOINT_URL)"
    state = find_running(settings.data_dir)
    if state is None or not state.aws_endpoint_url:
        return settings, (
            f"real AWS (no AWS_ENDPOINT_URL, no local stack running in {settings.data_dir})"
        )
    update = {
        "aws_endpoint_url": state.aws_endpoint_url,
        "aws_region": state.aws_region,
        "name_prefix": state.name_prefix,
    }
    where = (
        f"{state.aws_endpoint_url} (the local stack of {settings.data_dir}, "
        f"eventforge up pid {state.supervisor.pid})"
    )
    return settings.model_copy(update=update), where


def operator_settings() -> Settings:
    """Settings for an operator command, aimed (`aimed`) and said out loud.

    Prints the endpoint, account and region on stderr, so output meant for scripts stays clean.
    Raises ClickException if there is neither a local stack nor an AWS account to act on:
    a command never falls through to a real account without saying so.
    """
    settings, where = aimed(Settings())
    account = _account_of(settings, where)
    click.echo(
        f"acting on {where}: account {account}, region {settings.aws_region}, "
        f"prefix {settings.name_prefix!r}",
        err=True,
    )
    return settings


def _account_of(settings: Settings, where: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    from eventforge.runtime import aws

    try:
        return aws.account_id(settings)
    except (BotoCoreError, ClientError) as error:
        hint = "" if settings.aws_endpoint_url else "; start the local stack with `make up`"
        raise click.ClickException(f"cannot act on {where}: {error}{hint}") from None
