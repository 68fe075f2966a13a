"""Units of work: one transaction per use case; entity events go to the outbox with it.

`SqlUnitOfWork` owns its session and commits it. `SessionUnitOfWork` works in a session it is
handed — the queue consumer's, whose transaction also holds the inbox row — and leaves the
commit to its owner.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from eventforge.notifier.adapters.notification_repository import SqlNotifications
from eventforge.notifier.adapters.repository import SqlDeliveries, SqlWebhooks
from eventforge.notifier.domain.model import Delivery, Notification, Webhook
from eventforge.notifier.service_layer.events import to_payload
from eventforge.notifier.service_layer.ports import (
    DeliveryRepository,
    NotificationRepository,
    WebhookRepository,
)
from eventforge.runtime.messaging.outbox import record_event
from eventforge.runtime.unit_of_work import EventUnitOfWork, SqlEventUnitOfWork

Tracked = TypeVar("Tracked", Webhook, Delivery, Notification)


class UnitOfWork(EventUnitOfWork[Webhook | Delivery | Notification]):
    """Rolls back unless committed; `commit` also records the events of the entities it saw."""

    webhooks: WebhookRepository
    deliveries: DeliveryRepository
    notifications: NotificationRepository

    # The same as the base's, typed to give each kind of entity back as itself.
    def track(self, entity: Tracked) -> Tracked:  # type: ignore[override]
        """Remember an entity so its new events are recorded when the unit commits."""
        super().track(entity)
        return entity

    def outgoing(
        self, entity: Webhook | Delivery | Notification, event: Any
    ) -> tuple[Message, str]:
        return to_payload(event)


class _SessionBound(UnitOfWork):
    session: Session

    def bind(self, session: Session) -> None:
        self.session = session
        self.webhooks = SqlWebhooks(session)
        self.deliveries = SqlDeliveries(session)
        self.notifications = SqlNotifications(session)

    def record(self, payload: Message, *, subject: str) -> None:
        record_event(self.session, "notifier", payload, subject=subject)


class SqlUnitOfWork(_SessionBound, SqlEventUnitOfWork):
    """A unit of work over its own session of the notifier schema."""

    service = "notifier"


class SessionUnitOfWork(_SessionBound):
    """A unit of work inside a transaction someone else owns: commit flushes, never commits."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.bind(session)

    def _commit(self) -> None:
        self.session.flush()

    def rollback(self) -> None:
        """The owner rolls back (a handler's exception reaches the consumer, which does)."""
