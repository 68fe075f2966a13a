"""Scheduled jobs on the worker side: a service's job handlers, held to the topology's list, and
the retention job every service runs.

A job's tick arrives on the service's jobs queue like any event and goes through the same
`MessageProcessor`: traced, retried, dead-lettered, and run once per tick (see `processing`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from eventforge.runtime.messaging.messages import IncomingMessage, JobTick
from eventforge.runtime.messaging.outbox import purge_published
from eventforge.runtime.messaging.processing import HandlerRegistry, purge_inbox
from eventforge.runtime.settings import ServiceName
from eventforge.topology import TOPOLOGY, Topology

log = logging.getLogger("eventforge.jobs")

JobRun = Callable[[JobTick], object]
"""What a job does for one tick; it commits its own units of work (and may be run again)."""

INBOX_RETENTION = timedelta(days=15)
"""Longer than any queue's or DLQ's message retention: a late redelivery still finds its row."""
OUTBOX_RETENTION = timedelta(hours=24)
"""How long a published outbox row is kept (to answer what was published, and when)."""


def register_jobs(
    registry: HandlerRegistry,
    service: ServiceName,
    runs: Mapping[str, JobRun],
    *,
    topology: Topology = TOPOLOGY,
) -> HandlerRegistry:
    """Register each job's run (by job name) for its ticks, `job:<name>`; the registry.

    Raises ValueError unless `runs` names exactly the jobs the topology gives `service`: a
    schedule without a handler would dead-letter every tick, a handler without one never run.
    """
    declared = {job.name: job for job in topology.jobs_of(service)}
    missing, unknown = sorted(declared.keys() - runs.keys()), sorted(runs.keys() - declared)
    if missing or unknown:
        raise ValueError(
            f"{service} job handlers: missing {missing or 'none'}, "
            f"not jobs of {service} {unknown or 'none'}"
        )
    for name, run in runs.items():
        # The name recorded in the inbox is the job's: the tick's id is only unique with it.
        registry.register(
            declared[name].handler_key, _handler(run), name=name, own_transactions=True
        )
    return registry


def _handler(run: JobRun) -> Callable[[IncomingMessage, Session], None]:
    def handle(message: IncomingMessage, session: Session) -> None:
        del session  # a job commits its own units of work
        if message.job is None:
            raise TypeError(f"{message.event_type} message without a tick")
        run(message.job)

    return handle


Purge = Callable[[], int]
"""Deletes one kind of old rows; how many."""


def inbox_purge(engine: Engine, older_than: timedelta = INBOX_RETENTION) -> Purge:
    """Delete inbox rows processed more than `older_than` ago."""
    return lambda: purge_inbox(engine, older_than)


def outbox_purge(engine: Engine, older_than: timedelta = OUTBOX_RETENTION) -> Purge:
    """Delete outbox rows published more than `older_than` ago (unpublished ones stay)."""
    return lambda: purge_published(engine, older_than)


def retention_job(purges: Mapping[str, Purge]) -> JobRun:
    """A retention job: run every purge (named by what it deletes) and log what each deleted.

    A purge that fails fails the tick, which is retried: the purges already done find nothing
    the second time.
    """

    def run(tick: JobTick) -> dict[str, int]:
        deleted = {name: purge() for name, purge in purges.items()}
        log.info(
            "retention of %s: %s",
            tick.tick,
            ", ".join(f"{count} {name}" for name, count in deleted.items()),
            extra={"job": tick.job, "tick": tick.tick, "deleted": deleted},
        )
        return deleted

    return run


def standard_retention(engine: Engine) -> dict[str, Purge]:
    """The purges of a service with an inbox and an outbox (add its own to them)."""
    return {"inbox rows": inbox_purge(engine), "published outbox rows": outbox_purge(engine)}
