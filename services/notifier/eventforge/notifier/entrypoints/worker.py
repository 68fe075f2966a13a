"""The notifier worker: consumes order and file events and SES's email events, dispatches
webhooks and emails, and runs the notifier's jobs (due retries, retention)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy.orm import Session

from eventforge.notifier.bootstrap import NotifierApp, bootstrap
from eventforge.notifier.service_layer.dispatcher import Dispatcher
from eventforge.notifier.service_layer.fan_out import fan_out
from eventforge.notifier.service_layer.notifications import (
    ACCEPTED_EVENTS,
    REJECT_EVENT,
    record_provider_event,
)
from eventforge.notifier.service_layer.retention import purge_history
from eventforge.notifier.service_layer.webhooks import deliverable_event_types
from eventforge.runtime.messaging.jobs import register_jobs, retention_job, standard_retention
from eventforge.runtime.messaging.messages import SES_PREFIX, IncomingMessage, JobTick
from eventforge.runtime.messaging.processing import HandlerRegistry
from eventforge.runtime.messaging.worker_process import Periodic, Worker, run_worker
from eventforge.runtime.settings import Settings

log = logging.getLogger("eventforge.notifier.worker")

DISPATCH_SECONDS = 0.5
RETRIES_SETTLE_SECONDS = 60.0
"""How long a `delivery-retries` tick waits for the attempts it started to be recorded."""


def handlers(app: NotifierApp, dispatch: Dispatcher) -> HandlerRegistry:
    """Event type → handler for the notifier's queues (every type they carry, and its jobs')."""

    # The inbox records this handler as "notify": keep the name, or old events run again.
    def notify(message: IncomingMessage, session: Session) -> None:
        if message.envelope is None:
            raise TypeError(f"{message.event_type} message without an envelope")
        fan_out(
            envelope=message.envelope,
            uow=app.uow_in(session),
            files=app.files,
            renderer=app.renderer,
        )

    def provider_event(message: IncomingMessage, session: Session) -> None:
        if message.ses is None:
            raise TypeError(f"{message.event_type} message without an SES event")
        record_provider_event(message.ses, uow=app.uow_in(session))

    def retry_due(tick: JobTick) -> int:
        started = dispatch.run_once()
        if not dispatch.wait_idle(RETRIES_SETTLE_SECONDS):
            log.warning(
                "retries of %s still in flight after %ss", tick.tick, RETRIES_SETTLE_SECONDS
            )
        return started

    registry = HandlerRegistry()
    for event_type in deliverable_event_types():
        registry.register(event_type, notify, name="notify")
    for event_type in (*ACCEPTED_EVENTS, REJECT_EVENT):
        registry.register(SES_PREFIX + event_type, provider_event, name="provider_event")
    keep = timedelta(days=app.settings.notifier_retention_days)
    history = {
        "finished deliveries and emails": lambda: purge_history(uow=app.uow(), older_than=keep)
    }
    return register_jobs(
        registry,
        "notifier",
        {
            "delivery-retries": retry_due,
            "notifier-retention": retention_job({**standard_retention(app.engine), **history}),
        },
    )


def dispatcher(app: NotifierApp) -> Dispatcher:
    """The dispatcher of webhook deliveries and emails, on the app's adapters."""
    return Dispatcher(
        uow=app.uow,
        transport=app.transport,
        resolver=app.resolver,
        mailer=app.mailer,
        policy=app.delivery_policy,
        email_policy=app.email_policy,
        concurrency=app.settings.notifier_dispatch_concurrency,
    )


def worker(settings: Settings) -> Worker:
    """The notifier consumer: fan-out of events, the dispatch loop, and the notifier's jobs."""
    app = bootstrap(settings)
    dispatch = dispatcher(app)
    return Worker(
        app.engine,
        handlers(app, dispatch),
        # In-process, not a job: a first attempt goes out within half a second of the event
        # that queued it, which a schedule (a minute at best) cannot do. It claims whatever is
        # due, so it takes due retries too between `delivery-retries` ticks; the ticks are what
        # retries them where no loop runs (a Lambda consumer), and after the batch dispatch.
        periodic=[
            Periodic(
                "webhook and email dispatch", DISPATCH_SECONDS, dispatch.run_once, after_batch=True
            )
        ],
        close=dispatch.shutdown,
        settle=dispatch.wait_idle,
    )


def main(settings: Settings, stop: threading.Event) -> None:
    """Consume the notifier's queues and dispatch until told to stop."""
    run_worker(settings, "notifier", worker(settings), stop)
