"""The notifier worker: consumes order and file events and SES's email events, and dispatches
webhooks and emails."""

from __future__ import annotations

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
from eventforge.runtime.messaging.messages import SES_PREFIX, IncomingMessage
from eventforge.runtime.messaging.processing import Handler
from eventforge.runtime.messaging.worker_process import Periodic, Worker, run_worker
from eventforge.runtime.settings import Settings

DISPATCH_SECONDS = 0.5
RETENTION_SECONDS = 3600


def handlers(app: NotifierApp) -> dict[str, Handler]:
    """Event type → handler for the notifier's queues (every type they carry)."""

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

    registry: dict[str, Handler] = dict.fromkeys(deliverable_event_types(), notify)
    for event_type in (*ACCEPTED_EVENTS, REJECT_EVENT):
        registry[SES_PREFIX + event_type] = provider_event
    return registry


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
    """The notifier consumer: fan-out of events, and the dispatch of what is due."""
    app = bootstrap(settings)
    dispatch = dispatcher(app)
    keep = timedelta(days=settings.notifier_retention_days)
    return Worker(
        app.engine,
        handlers(app),
        periodic=[
            Periodic(
                "webhook and email dispatch", DISPATCH_SECONDS, dispatch.run_once, after_batch=True
            ),
            Periodic(
                "delivery and email retention",
                RETENTION_SECONDS,
                lambda: purge_history(uow=app.uow(), older_than=keep),
            ),
        ],
        close=dispatch.shutdown,
        settle=dispatch.wait_idle,
    )


def main(settings: Settings, stop: threading.Event) -> None:
    """Consume the notifier's queues and dispatch until told to stop."""
    run_worker(settings, "notifier", worker(settings), stop)
