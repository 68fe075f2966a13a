"""Translate the notifier's entities into their protos."""

from __future__ import annotations

from eventforge.notifier.domain.model import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Notification,
    NotificationStatus,
    Webhook,
)
from eventforge.notifier.v1 import notifier_pb2

_NOTIFICATION_STATUS = {
    NotificationStatus.PENDING: notifier_pb2.NOTIFICATION_STATUS_PENDING,
    NotificationStatus.SENDING: notifier_pb2.NOTIFICATION_STATUS_SENDING,
    NotificationStatus.SENT: notifier_pb2.NOTIFICATION_STATUS_SENT,
    NotificationStatus.FAILED: notifier_pb2.NOTIFICATION_STATUS_FAILED,
}


def webhook_proto(webhook: Webhook) -> notifier_pb2.Webhook:
    message = notifier_pb2.Webhook(
        webhook_id=webhook.webhook_id,
        url=webhook.url,
        event_types=list(webhook.event_types),
        status=notifier_pb2.WebhookStatus.Value(f"WEBHOOK_STATUS_{webhook.status.value}"),
        consecutive_failures=webhook.consecutive_failures,
        description=webhook.description,
    )
    message.create_time.FromDatetime(webhook.created_at)
    return message


def attempt_proto(attempt: DeliveryAttempt) -> notifier_pb2.DeliveryAttempt:
    message = notifier_pb2.DeliveryAttempt(
        attempt_number=attempt.number,
        http_status=attempt.http_status,
        latency_ms=attempt.latency_ms,
        error=attempt.error,
    )
    message.attempt_time.FromDatetime(attempt.attempted_at)
    return message


def delivery_proto(delivery: Delivery) -> notifier_pb2.Delivery:
    message = notifier_pb2.Delivery(
        delivery_id=delivery.delivery_id,
        webhook_id=delivery.webhook_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=notifier_pb2.DeliveryStatus.Value(f"DELIVERY_STATUS_{delivery.status.value}"),
        attempts=[attempt_proto(attempt) for attempt in delivery.attempts],
    )
    if delivery.status is DeliveryStatus.RETRYING and delivery.next_attempt_at is not None:
        message.next_attempt_time.FromDatetime(delivery.next_attempt_at)
    message.create_time.FromDatetime(delivery.created_at)
    return message


def notification_proto(notification: Notification) -> notifier_pb2.Notification:
    message = notifier_pb2.Notification(
        notification_id=notification.notification_id,
        event_id=notification.event_id,
        event_type=notification.event_type,
        channel=notification.channel,
        recipient=notification.recipient,
        subject=notification.subject,
        status=_NOTIFICATION_STATUS[notification.status],
        provider_message_id=notification.provider_message_id,
        attempts=notification.attempts,
        last_error=notification.last_error,
    )
    if notification.sent_at is not None:
        message.send_time.FromDatetime(notification.sent_at)
    return message
