"""Domain events → the published `notification.sent` and `notification.failed` events."""

from __future__ import annotations

from google.protobuf.message import Message

from eventforge.events.v1 import events_pb2
from eventforge.notifier.domain import model


def to_payload(event: model.Event) -> tuple[Message, str]:
    """The published form of a domain event, and its subject (the aggregate it is about)."""
    match event:
        case model.EndpointFailing():
            failed = events_pb2.NotificationFailed(
                webhook_id=event.webhook_id,
                url=event.url,
                consecutive_failures=event.consecutive_failures,
                last_error=event.last_error,
                cause_event_id=event.cause_event_id,
            )
            return failed, event.webhook_id
        case model.WebhookDelivered():
            sent = events_pb2.NotificationSent(
                notification_id=event.delivery_id,
                cause_event_id=event.cause_event_id,
                channel="webhook",
                recipient=event.webhook_id,
            )
            return sent, event.delivery_id
        case model.EmailSent():
            sent = events_pb2.NotificationSent(
                notification_id=event.notification_id,
                cause_event_id=event.cause_event_id,
                channel="email",
                recipient=event.recipient,
            )
            return sent, event.notification_id
