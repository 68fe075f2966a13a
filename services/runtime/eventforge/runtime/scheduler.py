"""The local stand-in for EventBridge Scheduler: one process sends each job's ticks to its queue.

`eventforge up` runs one (`eventforge scheduler`), whatever the number of workers: each tick is
one message, `Job.tick_body(<scheduled time>)`, with no attributes, as in the cloud. Each job's
last tick is recorded in `<data dir>/scheduler.json` (`RunLog`), where `eventforge jobs` reads it
and where a restarted scheduler resumes from: the ticks missed while it was stopped are not sent
in a burst, only the latest of them (one catch-up). A job never run before starts with the first
tick after the scheduler started. While the queues cannot be reached (the emulator restarting)
the due ticks wait, and the sends are retried with backoff.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventforge.runtime import aws
from eventforge.runtime.aws import BROKER_ERRORS
from eventforge.runtime.backoff import Backoff
from eventforge.runtime.schedules import Schedule, format_tick
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY, Job

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("eventforge.scheduler")

STATE_FILE = "scheduler.json"
MAX_WAIT_SECONDS = 5.0
"""The longest the scheduler sleeps at once (the wall clock may jump meanwhile)."""

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Run:
    """One tick sent: its scheduled time, when it was sent, and whether by hand."""

    tick: datetime
    sent_at: datetime
    manual: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"tick": format_tick(self.tick), "sent_at": self.sent_at.isoformat()}

    @classmethod
    def of(cls, raw: Mapping[str, Any], *, manual: bool) -> Run:
        tick = datetime.fromisoformat(str(raw["tick"]))
        return cls(tick, datetime.fromisoformat(str(raw["sent_at"])), manual)


@dataclass(frozen=True)
class JobRuns:
    """A job's last scheduled tick and last tick sent by hand (`eventforge jobs run`)."""

    scheduled: Run | None = None
    manual: Run | None = None

    @property
    def last(self) -> Run | None:
        """The one sent last."""
        runs = [run for run in (self.scheduled, self.manual) if run is not None]
        return max(runs, key=lambda run: run.sent_at, default=None)


class RunLog:
    """Each job's last runs, in a JSON file that the scheduler and `eventforge jobs run` update
    under a lock and replace atomically (a reader never sees half of it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, settings: Settings) -> RunLog:
        """The run log of the stack whose data directory the settings name."""
        return cls(settings.data_dir / STATE_FILE)

    def read(self) -> dict[str, JobRuns]:
        """Every job's runs (unreadable or missing: none)."""
        try:
            raw = json.loads(self.path.read_text())
            return {
                str(name): JobRuns(
                    scheduled=Run.of(runs["scheduled"], manual=False)
                    if runs.get("scheduled")
                    else None,
                    manual=Run.of(runs["manual"], manual=True) if runs.get("manual") else None,
                )
                for name, runs in raw["jobs"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def record(self, job: str, run: Run) -> None:
        """Record a run of `job` as its last scheduled or manual one."""
        with self._locked():
            try:
                document = json.loads(self.path.read_text())
                jobs = dict(document["jobs"])
            except (OSError, ValueError, KeyError, TypeError):
                jobs = {}
            entry = dict(jobs.get(job) or {})
            entry["manual" if run.manual else "scheduled"] = run.as_dict()
            jobs[job] = entry
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"jobs": jobs}, indent=2, sort_keys=True) + "\n")
            os.replace(temporary, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class TickSender:
    """Sends ticks to the jobs queues, resolving each queue's URL once."""

    def __init__(self, sqs: SQSClient, settings: Settings) -> None:
        self.sqs = sqs
        self.names = TOPOLOGY.resolve_for(settings)
        self._urls: dict[str, str] = {}

    def queue_name(self, job: Job) -> str:
        """The physical name of the queue the job's ticks go to."""
        return self.names.queues[job.queue].name

    def send(self, job: Job, tick: datetime, attributes: Mapping[str, str] | None = None) -> str:
        """Send one tick of `job`; its message id. Raises the broker's errors."""
        name = self.queue_name(job)
        if name not in self._urls:
            self._urls[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        answer = self.sqs.send_message(
            QueueUrl=self._urls[name],
            MessageBody=job.tick_body(format_tick(tick)),
            MessageAttributes={
                key: {"DataType": "String", "StringValue": value}
                for key, value in (attributes or {}).items()
            },
        )
        return answer["MessageId"]


class Scheduler:
    """Decides which ticks are due and sends them; `run` loops until stopped."""

    def __init__(
        self,
        jobs: Sequence[Job],
        send: Callable[[Job, datetime], str],
        runs: RunLog,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.jobs = tuple(jobs)
        self.schedules = {job.name: Schedule.parse(job.schedule) for job in self.jobs}
        self._send = send
        self.runs = runs
        self.clock = clock
        self.started = clock()
        known = runs.read()
        self._last: dict[str, datetime] = {
            name: entry.scheduled.tick
            for name, entry in known.items()
            if entry.scheduled is not None
        }

    def due(self, now: datetime) -> list[tuple[Job, datetime]]:
        """The tick each job owes at `now`: its latest, if later than the last one sent (or
        than the scheduler's start, for a job never run)."""
        owed = []
        for job in self.jobs:
            tick = self.schedules[job.name].previous(now)
            if tick is not None and tick > self._last.get(job.name, self.started):
                owed.append((job, tick))
        return owed

    def send_due(self) -> int:
        """Send every due tick and record it; how many. Raises the broker's errors (the ticks
        not sent stay due)."""
        sent = 0
        for job, tick in self.due(self.clock()):
            message_id = self._send(job, tick)
            self._last[job.name] = tick
            self.runs.record(job.name, Run(tick, self.clock()))
            sent += 1
            log.info(
                "tick %s of %s sent to %s (message %s)",
                format_tick(tick),
                job.name,
                job.queue,
                message_id,
                extra={"job": job.name, "tick": format_tick(tick), "message_id": message_id},
            )
        return sent

    def seconds_to_next(self) -> float:
        """How long until the next tick of any job (at most MAX_WAIT_SECONDS)."""
        now = self.clock()
        upcoming = [tick for schedule in self.schedules.values() if (tick := schedule.next(now))]
        if not upcoming:
            return MAX_WAIT_SECONDS
        return min(max((min(upcoming) - now).total_seconds(), 0.0), MAX_WAIT_SECONDS)

    def run(self, stop: threading.Event) -> None:
        """Send ticks as they fall due until `stop` is set; a failure is retried with backoff."""
        backoff = Backoff(cap=30.0)
        log.info("scheduling %s", ", ".join(f"{j.name} {j.schedule}" for j in self.jobs))
        while not stop.is_set():
            try:
                self.send_due()
                backoff.reset()
            except (*BROKER_ERRORS, OSError) as error:
                delay = backoff.next_delay()
                log.warning("sending ticks failed (%s); retrying in %.1fs", error, delay)
                stop.wait(delay)
                continue
            # A little past the tick: the clock then certainly shows it.
            stop.wait(self.seconds_to_next() + 0.01)


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    """Send the ticks of every job of the topology until `stop` is set."""
    sender = TickSender(aws.sqs(settings), settings)
    Scheduler(TOPOLOGY.jobs, sender.send, RunLog.of(settings)).run(stop)
