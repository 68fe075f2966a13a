"""The faults a chaos run injects, on a schedule over the load phase.

- `kill`: SIGKILL a random worker or relay (the stack's monitor restarts it, as a supervisor
  would); APIs are never killed.
- `pg_terminate`: terminate every PostgreSQL backend of the run's database.
- `emulator_pause`: SIGSTOP the AWS emulator for a while, then SIGCONT (state survives: every
  call in between hangs, none fails outright).
- `poison`: garbage bodies with an `event_type` attribute sent straight to a few queues; they
  must end in the DLQs.
- `db_outage`: cut the TCP proxy between the stack and PostgreSQL for a few seconds, watching
  every API's health go NOT_SERVING and come back SERVING without a restart.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.proxy import TcpProxy
from chaos.stack import NOT_SERVING, SERVING, Stack, health_status
from eventforge.runtime import aws
from eventforge.runtime.settings import SERVICES, ServiceName
from eventforge.topology import EVENT_TYPE_ATTRIBUTE, TOPOLOGY
from harness.workspace import Workspace

POISON_MARKER = "chaos-poison-"
POISON_PER_QUEUE = 2
KINDS = ("worker_kill", "relay_kill", "pg_terminate", "emulator_pause", "poison", "db_outage")
"""Every kind of fault, for `--faults`."""


@dataclass(frozen=True)
class Plan:
    """When each fault happens, in seconds from the start of the load."""

    duration: float
    kinds: frozenset[str] = frozenset(KINDS)
    kill_every: float = 6.0
    terminate_every: float = 10.0
    poison_at: float | None = None
    pause_at: float | None = None
    pause_seconds: float = 20.0
    outage_at: float | None = None
    outage_seconds: float = 5.0

    @classmethod
    def for_duration(
        cls,
        duration: float,
        *,
        kinds: frozenset[str] = frozenset(KINDS),
        pause_seconds: float = 20.0,
        outage_seconds: float = 5.0,
    ) -> Plan:
        """The default schedule: poison early, the emulator pause at a quarter, the outage at
        two thirds, kills and backend terminations throughout; only the `kinds` chosen."""
        unknown = kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        return cls(
            duration=duration,
            kinds=kinds,
            kill_every=max(3.0, min(6.0, duration / 10)),
            terminate_every=max(4.0, min(10.0, duration / 6)),
            poison_at=duration * 0.1 if "poison" in kinds else None,
            pause_at=duration * 0.25 if "emulator_pause" in kinds else None,
            pause_seconds=min(pause_seconds, duration * 0.3),
            outage_at=duration * 0.65 if "db_outage" in kinds else None,
            outage_seconds=min(outage_seconds, duration * 0.3),
        )

    @property
    def killed_roles(self) -> tuple[str, ...]:
        return tuple(r for r in ("worker", "relay") if f"{r}_kill" in self.kinds)


@dataclass
class HealthWatch:
    """What one API's health did around the database outage."""

    service: ServiceName
    not_serving_after: float | None = None
    """Seconds from the cut to the first NOT_SERVING seen (None: never seen)."""
    serving_after: float | None = None
    """Seconds from the restore to SERVING again (None: not within the wait)."""
    restarted: bool = False

    @property
    def ok(self) -> bool:
        return (
            self.not_serving_after is not None
            and self.serving_after is not None
            and not self.restarted
        )

    def describe(self) -> str:
        cut = (
            f"NOT_SERVING {self.not_serving_after:.1f}s after the cut"
            if self.not_serving_after is not None
            else "never NOT_SERVING"
        )
        back = (
            f"SERVING {self.serving_after:.1f}s after the restore"
            if self.serving_after is not None
            else "not SERVING again"
        )
        return f"{self.service}: {cut}, {back}{', RESTARTED' if self.restarted else ''}"


@dataclass
class FaultLog:
    counts: Counter[str] = field(default_factory=Counter)
    killed: Counter[str] = field(default_factory=Counter)
    backends_terminated: int = 0
    poison_markers: set[str] = field(default_factory=set)
    health: list[HealthWatch] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{kind}={n}" for kind, n in sorted(self.counts.items())]
        return " ".join(parts) or "none yet"


class Faults:
    """Runs the plan in a thread: `run(stop)`; `finish()` undoes whatever is still in effect."""

    def __init__(
        self,
        *,
        plan: Plan,
        stack: Stack,
        workspace: Workspace,
        proxy: TcpProxy,
        seed: int,
        say: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.stack = stack
        self.workspace = workspace
        self.proxy = proxy
        self.say = say
        self.log = FaultLog()
        self._rng = random.Random(seed)  # noqa: S311
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        started = time.monotonic()
        plan = self.plan
        events: list[tuple[float, int, str]] = []
        order = 0

        def at(moment: float | None, what: str) -> None:
            nonlocal order
            if moment is not None and moment < plan.duration:
                order += 1
                heapq.heappush(events, (moment, order, what))

        at(plan.poison_at, "poison")
        at(plan.pause_at, "pause")
        at(plan.outage_at, "outage")
        if plan.killed_roles:
            at(min(5.0, plan.kill_every), "kill")
        if "pg_terminate" in plan.kinds:
            at(min(7.0, plan.terminate_every), "terminate")
        while events and not stop.is_set():
            moment, _, what = heapq.heappop(events)
            if stop.wait(max(0.0, started + moment - time.monotonic())):
                break
            try:
                self._do(what)
            except Exception as error:
                self.log.errors.append(f"{what}: {type(error).__name__}: {error}")
                self.say(f"fault {what} failed: {error}")
            if what == "kill":
                at(moment + plan.kill_every * self._rng.uniform(0.5, 1.5), "kill")
            elif what == "terminate":
                at(moment + plan.terminate_every * self._rng.uniform(0.5, 1.5), "terminate")
        self.finish()

    def finish(self) -> None:
        """Resume the emulator and restore the proxy if a fault is still in effect."""
        for thread in self._threads:
            thread.join(self.plan.pause_seconds + 60)
        if self.workspace.emulator.paused:
            self.workspace.emulator.resume()
        if self.proxy.cut_off:
            self.proxy.restore()

    def _do(self, what: str) -> None:
        if what == "kill":
            self._kill()
        elif what == "terminate":
            self._terminate()
        elif what == "poison":
            self._poison()
        elif what == "pause":
            self._background(self._pause, "emulator-pause")
        elif what == "outage":
            self._background(self._outage, "db-outage")

    def _background(self, target: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception as error:
                self.log.errors.append(f"{name}: {type(error).__name__}: {error}")
                self.say(f"fault {name} failed: {error}")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.log.counts[kind] += 1

    def _kill(self) -> None:
        name = self._rng.choice(self.stack.names(self.plan.killed_roles))
        if self.stack.kill(name) is not None:
            self.log.killed[name] += 1
            self._count("kill")

    def _terminate(self) -> None:
        with self.workspace.connect() as connection:
            row = connection.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.workspace.database_name,),
            ).fetchone()
        self.log.backends_terminated += int(row[0]) if row else 0
        self._count("pg_terminate")

    def _poison(self) -> None:
        sqs = aws.sqs(self.stack.settings)
        resolved = TOPOLOGY.resolve(self.stack.settings.name_prefix)
        for queue in TOPOLOGY.queues:
            url = sqs.get_queue_url(QueueName=resolved.queues[queue.name].name)["QueueUrl"]
            event_type = (queue.event_types or ("s3:ObjectCreated:Put",))[0]
            for _ in range(POISON_PER_QUEUE):
                marker = f"{POISON_MARKER}{uuid.uuid4().hex}"
                sqs.send_message(
                    QueueUrl=url,
                    MessageBody=f"{marker} {{{{ this is not an envelope ]]",
                    MessageAttributes={
                        EVENT_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": event_type}
                    },
                )
                self.log.poison_markers.add(marker)
                self._count("poison")

    def _pause(self) -> None:
        emulator = self.workspace.emulator
        self.say(f"fault: emulator paused for {self.plan.pause_seconds:.0f}s (SIGSTOP)")
        emulator.pause()
        self._count("emulator_pause")
        try:
            time.sleep(self.plan.pause_seconds)
        finally:
            emulator.resume()
        self.say("fault: emulator resumed (SIGCONT)")

    def _outage(self) -> None:
        seconds = self.plan.outage_seconds
        watches = {service: HealthWatch(service) for service in SERVICES}
        pids = {s: self.stack.child(f"{s}-api").pid for s in SERVICES}
        self.say(f"fault: database cut off for {seconds:.0f}s (TCP proxy)")
        cut = time.monotonic()
        self.proxy.cut()
        self._count("db_outage")
        try:
            while time.monotonic() - cut < seconds:
                for service, watch in watches.items():
                    if watch.not_serving_after is None:
                        status = health_status(self.stack.address_of(service), timeout=0.5)
                        if status == NOT_SERVING:
                            watch.not_serving_after = time.monotonic() - cut
                time.sleep(0.1)
        finally:
            self.proxy.restore()
        restored = time.monotonic()
        while time.monotonic() - restored < 30:
            waiting = [w for w in watches.values() if w.serving_after is None]
            if not waiting:
                break
            for watch in waiting:
                if health_status(self.stack.address_of(watch.service), timeout=0.5) == SERVING:
                    watch.serving_after = time.monotonic() - restored
            time.sleep(0.1)
        for service, watch in watches.items():
            watch.restarted = self.stack.child(f"{service}-api").pid != pids[service]
        self.log.health = list(watches.values())
        self.say("fault: database back; " + "; ".join(w.describe() for w in watches.values()))
