"""The ingest worker: its scheduled jobs (`ingest-jobs`); ingest consumes no topic."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from eventforge.ingest.bootstrap import bootstrap
from eventforge.ingest.service_layer.retention import purge_provider_events
from eventforge.runtime.messaging.jobs import (
    Purge,
    register_jobs,
    retention_job,
    standard_retention,
)
from eventforge.runtime.messaging.processing import HandlerRegistry
from eventforge.runtime.messaging.worker_process import Worker, run_worker
from eventforge.runtime.settings import Settings


def provider_events_purge(engine: Engine, older_than: timedelta) -> Purge:
    """Forget the provider event ids received more than `older_than` ago, in one transaction."""

    def purge() -> int:
        with Session(engine) as session, session.begin():
            return purge_provider_events(session, older_than=older_than)

    return purge


def handlers(settings: Settings, engine: Engine) -> HandlerRegistry:
    """Handler registry key → handler: the ticks of ingest's jobs."""
    keep = timedelta(days=settings.ingest_retention_days)
    purges = standard_retention(engine) | {
        "provider event ids": provider_events_purge(engine, keep)
    }
    return register_jobs(HandlerRegistry(), "ingest", {"ingest-retention": retention_job(purges)})


def worker(settings: Settings) -> Worker:
    """The ingest consumer: the handlers of its jobs' ticks."""
    engine = bootstrap(settings).engine
    return Worker(engine, handlers(settings, engine))


def main(settings: Settings, stop: threading.Event) -> None:
    """Consume ingest's queues until told to stop."""
    run_worker(settings, "ingest", worker(settings), stop)
