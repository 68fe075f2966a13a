"""The ingest worker: its scheduled jobs (`ingest-jobs`); ingest consumes no topic."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy.orm import Session

from eventforge.ingest.bootstrap import bootstrap
from eventforge.ingest.service_layer.retention import purge_provider_events
from eventforge.runtime.messaging.messages import IncomingMessage
from eventforge.runtime.messaging.processing import Handler
from eventforge.runtime.messaging.worker_process import Worker, run_worker
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY

RETENTION_JOB = TOPOLOGY.job("ingest-retention")


def handlers(settings: Settings) -> dict[str, Handler]:
    """Handler registry key → handler: the ticks of ingest's jobs."""
    keep = timedelta(days=settings.ingest_retention_days)

    # The inbox records this handler by its name: keep it, or old ticks run again.
    def ingest_retention(message: IncomingMessage, session: Session) -> None:
        del message  # every tick does the same: forget what is older than the retention
        purge_provider_events(session, older_than=keep)

    return {RETENTION_JOB.handler_key: ingest_retention}


def worker(settings: Settings) -> Worker:
    """The ingest consumer: the handlers of its jobs' ticks."""
    return Worker(bootstrap(settings).engine, handlers(settings))


def main(settings: Settings, stop: threading.Event) -> None:
    """Consume ingest's queues until told to stop."""
    run_worker(settings, "ingest", worker(settings), stop)
