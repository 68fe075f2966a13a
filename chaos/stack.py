"""The stack under test: every service's api, worker and relay under a `Supervisor`.

The stack's processes reach PostgreSQL through the run's `TcpProxy` (so an outage can be
simulated) and use the run's emulator. A monitor thread restarts whatever exits, as `eventforge
up` would, and tells the exits the run caused (`kill`) from the ones it did not.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from eventforge.cli.stack import roles_of
from eventforge.cli.supervisor import Child, Supervisor, python_command
from eventforge.runtime.emulator import Emulator, free_port
from eventforge.runtime.migrations import migrate
from eventforge.runtime.provision import provision
from eventforge.runtime.settings import ALL_SERVICES, SERVICES, ServiceName, Settings
from eventforge.topology import TOPOLOGY

PREFIX = "chaos"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MAX_RESTARTS = 10_000
"""The run restarts killed children many times; the supervisor's own limit is for crash loops."""


def health_status(address: str, timeout: float = 1.0) -> int | None:
    """The server's overall health status, or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


@dataclass
class Exits:
    """What the monitor saw: restarts per child, and exits nobody asked for."""

    restarts: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


class Stack:
    """Start, kill, restart and stop the stack's processes."""

    def __init__(
        self,
        *,
        root: Path,
        database_url: str,
        proxied_database_url: str,
        emulator: Emulator,
        webhook_hosts: str = "127.0.0.1",
        worker_wait_seconds: int = 2,
    ) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        addresses = {service: f"127.0.0.1:{free_port()}" for service in ALL_SERVICES}
        # The stack's own view: the database through the proxy.
        self.settings = Settings(
            database_url=proxied_database_url,
            aws_endpoint_url=emulator.url,
            name_prefix=PREFIX,
            data_dir=root / "data",
            orders_addr=addresses["orders"],
            files_addr=addresses["files"],
            notifier_addr=addresses["notifier"],
            ingest_addr=addresses["ingest"],
            health_probe_seconds=0.5,
            worker_wait_seconds=worker_wait_seconds,
            notifier_webhook_allowed_hosts=webhook_hosts,
        )
        self.direct_database_url = database_url
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("EVENTFORGE_", "OTEL_")) and name != "DATABASE_URL"
        }
        env.update(
            {
                "DATABASE_URL": proxied_database_url,
                "AWS_ENDPOINT_URL": emulator.url,
                "EVENTFORGE_NAME_PREFIX": PREFIX,
                "EVENTFORGE_DATA_DIR": str(self.settings.data_dir),
                "EVENTFORGE_ORDERS_ADDR": addresses["orders"],
                "EVENTFORGE_FILES_ADDR": addresses["files"],
                "EVENTFORGE_NOTIFIER_ADDR": addresses["notifier"],
                "EVENTFORGE_INGEST_ADDR": addresses["ingest"],
                "EVENTFORGE_HEALTH_PROBE_SECONDS": "0.5",
                "EVENTFORGE_WORKER_WAIT_SECONDS": str(worker_wait_seconds),
                "EVENTFORGE_NOTIFIER_WEBHOOK_ALLOWED_HOSTS": webhook_hosts,
                # Quick webhook retries, so a refused attempt is retried within the drain.
                "EVENTFORGE_NOTIFIER_WEBHOOK_BACKOFF_SECONDS": "0.5",
                "EVENTFORGE_NOTIFIER_WEBHOOK_BACKOFF_MAX_SECONDS": "5",
            }
        )
        self.env = env
        self.supervisor = Supervisor(env, max_restarts=MAX_RESTARTS)
        self.exits = Exits()
        self._lock = threading.Lock()
        self._expected: set[int] = set()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    @property
    def database_name(self) -> str:
        return str(make_url(self.direct_database_url).database)

    def address_of(self, service: ServiceName) -> str:
        return self.settings.address_of(service)

    def names(self, roles: tuple[str, ...]) -> list[str]:
        """Names of the children with one of `roles`, e.g. ("worker", "relay")."""
        return [c.name for c in self.supervisor.children if c.name.rsplit("-", 1)[-1] in roles]

    def start(self, timeout: float = 60.0) -> float:
        """Provision, migrate, spawn everything and wait for every API; seconds it took."""
        started = time.monotonic()
        provision(self.settings, TOPOLOGY)
        direct = self.settings.model_copy(update={"database_url": self.direct_database_url})
        # Every service, as `eventforge up` runs them: ingest's worker consumes its jobs queue,
        # which the poison reaches like every other.
        for service in ALL_SERVICES:
            migrate(direct, service)
        for service in ALL_SERVICES:
            for role in roles_of(service):
                name = f"{service}-{role}"
                self.supervisor.spawn(
                    name, python_command("serve", service, role), self.logs / f"{name}.log"
                )
        # The stack's one scheduler, as `eventforge up` runs it: the jobs (stalled-saga
        # recovery among them) tick through the queues the faults hit.
        self.supervisor.spawn("scheduler", python_command("scheduler"), self.logs / "scheduler.log")
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()
        deadline = started + timeout
        for service in SERVICES:
            while health_status(self.address_of(service)) != SERVING:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service} not SERVING after {timeout:.0f}s")
                time.sleep(0.2)
        return time.monotonic() - started

    def child(self, name: str) -> Child:
        return next(c for c in self.supervisor.children if c.name == name)

    def kill(self, name: str) -> int | None:
        """SIGKILL one child (the monitor restarts it); its pid, or None if it was not running."""
        with self._lock:
            child = self.child(name)
            pid = child.pid
            if pid is None or child.exited() is not None:
                return None
            self._expected.add(pid)
            child.signal(signal.SIGKILL)
            return pid

    def wait_all_running(self, timeout: float = 30.0) -> bool:
        """Until every child runs (killed ones restarted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(c.exited() is None for c in self.supervisor.children):
                    return True
            time.sleep(0.2)
        return False

    def stop(self, grace: float = 10.0) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(5)
        with self._lock:
            self.supervisor.stop(grace)

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            with self._lock:
                before = {c.name: (c.pid, c.exited()) for c in self.supervisor.children}
                self.supervisor.check()
                for child in self.supervisor.children:
                    pid, code = before[child.name]
                    if code is None or child.pid == pid:
                        continue
                    self.exits.restarts[child.name] += 1
                    if pid not in self._expected:
                        self.exits.unexpected.append(f"{child.name} (pid {pid}) exited {code}")
