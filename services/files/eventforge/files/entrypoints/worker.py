"""The files queue worker: verify and process uploads, render receipts; its jobs expire stale
uploads and delete old inbox and outbox rows."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from eventforge.events.v1 import events_pb2
from eventforge.files.bootstrap import FilesApp, bootstrap
from eventforge.files.service_layer.handlers import expire_uploads
from eventforge.files.service_layer.processing import process_upload
from eventforge.files.service_layer.receipts import issue_receipt
from eventforge.files.service_layer.unit_of_work import MessageUnitOfWork
from eventforge.runtime.messaging.jobs import register_jobs, retention_job, standard_retention
from eventforge.runtime.messaging.messages import S3_OBJECT_CREATED, IncomingMessage
from eventforge.runtime.messaging.processing import HandlerRegistry
from eventforge.runtime.messaging.worker_process import Worker, run_worker
from eventforge.runtime.settings import Settings


def handlers(app: FilesApp) -> HandlerRegistry:
    """Event type → handler for the files queues (uploads, orders and its jobs' ticks)."""
    registry = HandlerRegistry()

    def on_object_created(message: IncomingMessage, session: Session) -> None:
        del session  # the pipeline commits PROCESSING first, then the outcome, on its own
        record = message.s3
        assert record is not None
        process_upload(
            bucket=record.bucket,
            key=record.key,
            uow=app.uow(),
            storage=app.storage,
            media=app.media,
            limits=app.limits,
        )

    def on_order_confirmed(message: IncomingMessage, session: Session) -> None:
        confirmed = message.payload
        assert isinstance(confirmed, events_pb2.OrderConfirmed)
        issue_receipt(
            order_id=confirmed.order_id,
            uow=MessageUnitOfWork(session),
            orders=app.orders,
            renderer=app.renderer,
            storage=app.storage,
        )

    # The file's status, not the inbox, keeps an upload from being processed twice.
    registry.register(
        S3_OBJECT_CREATED, on_object_created, name="process_upload", own_transactions=True
    )
    # The receipt is stored with the inbox row; a unique order id also guards against races.
    registry.register("order.confirmed", on_order_confirmed, name="issue_receipt")
    return register_jobs(
        registry,
        "files",
        {
            "upload-expiry-sweep": lambda tick: expire_uploads(uow=app.uow()),
            "files-retention": retention_job(standard_retention(app.engine)),
        },
    )


def worker(settings: Settings) -> Worker:
    """The files consumer: uploads, receipts and the files jobs."""
    app = bootstrap(settings)
    return Worker(app.engine, handlers(app))


def main(settings: Settings, stop: threading.Event) -> None:
    """Consume the files queues until told to stop."""
    run_worker(settings, "files", worker(settings), stop)
