"""What an event causes: a delivery to each subscribed endpoint and the emails it warrants.

Runs in the consumer's transaction (with the inbox row), so it happens once per event: a
redelivery is stopped by the inbox, and again by the unique (webhook, event) and (event,
recipient) keys. Nothing leaves the process here — the dispatcher sends after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace

from eventforge.events.v1.events_pb2 import Envelope
from eventforge.notifier.domain.model import Delivery, Notification
from eventforge.notifier.service_layer.emails import emails_for, receipt_file_id
from eventforge.notifier.service_layer.ports import EmailRenderer, FilesClient
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime import deferred
from eventforge.runtime.messaging.envelope import encode, payload_of

tracer = trace.get_tracer("eventforge.notifier.fan_out")


@dataclass(frozen=True)
class FanOut:
    """What one event added (duplicates of earlier work are not counted)."""

    deliveries: int
    emails: int


def fan_out(
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    files: FilesClient,
    renderer: EmailRenderer,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FanOut:
    """Record the deliveries and emails `envelope` causes; raises FilesUnavailable (retry)."""
    payload = payload_of(envelope)
    with tracer.start_as_current_span("notifier fan_out") as span:
        span.set_attribute("eventforge.event_type", envelope.event_type)
        # Ask files before writing anything: no locks are held while it answers.
        file_id = receipt_file_id(payload)
        link = files.download_url(file_id) if file_id else ""
        emails = [
            (intent, renderer.render(intent.template, intent.subject, intent.context))
            for intent in emails_for(payload, download_url=link)
        ]
        moment = now()
        # What runs later for this event (attempts, sends, retries) continues this context.
        cause = deferred.capture()
        added_deliveries = added_emails = 0
        with uow:
            body = encode(envelope)
            for webhook in uow.webhooks.subscribed_to(envelope.event_type):
                delivery = Delivery(
                    delivery_id=str(uuid.uuid4()),
                    webhook_id=webhook.webhook_id,
                    event_id=envelope.event_id,
                    event_type=envelope.event_type,
                    body=body,
                    created_at=moment,
                    next_attempt_at=moment,
                    cause=cause,
                )
                added_deliveries += uow.deliveries.add_if_absent(delivery)
            for intent, rendered in emails:
                notification = Notification(
                    notification_id=str(uuid.uuid4()),
                    event_id=envelope.event_id,
                    event_type=envelope.event_type,
                    recipient=intent.recipient,
                    subject=rendered.subject,
                    text_body=rendered.text,
                    html_body=rendered.html,
                    created_at=moment,
                    next_attempt_at=moment,
                    cause=cause,
                )
                added_emails += uow.notifications.add_if_absent(notification)
            uow.commit()
        span.set_attribute("eventforge.deliveries", added_deliveries)
        span.set_attribute("eventforge.emails", added_emails)
    return FanOut(added_deliveries, added_emails)
