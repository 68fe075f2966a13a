"""In-memory fakes of the notifier's ports, for fast tests of the domain and use cases."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Self

from google.protobuf.message import Message

from eventforge.notifier.domain.model import (
    Delivery,
    Notification,
    NotificationStatus,
    Webhook,
)
from eventforge.notifier.service_layer.ports import (
    DeliveryRepository,
    DueDelivery,
    FilesClient,
    FilesUnavailable,
    Mailer,
    MailError,
    NotificationRepository,
    PageCursor,
    PinnedTarget,
    ResolutionFailed,
    Resolver,
    WebhookRepository,
    WebhookTransport,
)
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork


class FakeWebhooks(WebhookRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Webhook] = {}

    def add(self, webhook: Webhook) -> None:
        self.save(webhook)

    def get(self, webhook_id: str, *, for_update: bool = False) -> Webhook | None:
        found = self.rows.get(webhook_id)
        return copy.deepcopy(found) if found else None

    def save(self, webhook: Webhook) -> None:
        self.rows[webhook.webhook_id] = replace(copy.deepcopy(webhook), events=[])

    def page(self, *, after: PageCursor | None, limit: int) -> list[Webhook]:
        alive = sorted(
            (w for w in self.rows.values() if not w.deleted),
            key=lambda w: (w.created_at, w.webhook_id),
        )
        if after is not None:
            alive = [w for w in alive if (w.created_at, w.webhook_id) > _key(after)]
        return copy.deepcopy(alive[:limit])

    def subscribed_to(self, event_type: str) -> list[Webhook]:
        return [
            copy.deepcopy(w)
            for w in self.rows.values()
            if not w.deleted and event_type in w.event_types
        ]


class FakeDeliveries(DeliveryRepository):
    def __init__(self, webhooks: FakeWebhooks) -> None:
        self.webhooks = webhooks
        self.rows: dict[str, Delivery] = {}

    def add_if_absent(self, delivery: Delivery) -> bool:
        if any(
            (d.webhook_id, d.event_id) == (delivery.webhook_id, delivery.event_id)
            for d in self.rows.values()
        ):
            return False
        self.save(delivery)
        return True

    def get(self, delivery_id: str, *, for_update: bool = False) -> Delivery | None:
        found = self.rows.get(delivery_id)
        return copy.deepcopy(found) if found else None

    def save(self, delivery: Delivery) -> None:
        self.rows[delivery.delivery_id] = replace(copy.deepcopy(delivery), events=[])

    def page(
        self, *, webhook_id: str, event_id: str, after: PageCursor | None, limit: int
    ) -> list[Delivery]:
        found = sorted(
            (
                d
                for d in self.rows.values()
                if (not webhook_id or d.webhook_id == webhook_id)
                and (not event_id or d.event_id == event_id)
            ),
            key=lambda d: (d.created_at, d.delivery_id),
            reverse=True,
        )
        if after is not None:
            found = [d for d in found if (d.created_at, d.delivery_id) < _key(after)]
        return copy.deepcopy(found[:limit])

    def purge_finished(self, *, before: datetime, limit: int) -> int:
        old = sorted(
            (d for d in self.rows.values() if d.status.finished and d.created_at < before),
            key=lambda d: d.created_at,
        )[:limit]
        for delivery in old:
            del self.rows[delivery.delivery_id]
        return len(old)

    def due(self, *, now: datetime, limit: int) -> list[DueDelivery]:
        due = sorted(
            (
                d
                for d in self.rows.values()
                if not d.status.finished
                and d.next_attempt_at is not None
                and d.next_attempt_at <= now
            ),
            key=lambda d: d.next_attempt_at or now,
        )
        claims = []
        for delivery in due[:limit]:
            webhook = self.webhooks.rows[delivery.webhook_id]
            claims.append(
                DueDelivery(
                    delivery_id=delivery.delivery_id,
                    webhook_id=delivery.webhook_id,
                    url=webhook.url,
                    secret=webhook.secret,
                    event_id=delivery.event_id,
                    event_type=delivery.event_type,
                    body=delivery.body,
                    attempt_number=delivery.next_attempt_number,
                    created_at=delivery.created_at,
                    cause=dict(delivery.cause),
                )
            )
        return claims

    def lease(self, delivery_ids: Sequence[str], *, until: datetime) -> None:
        for delivery_id in delivery_ids:
            self.rows[delivery_id].next_attempt_at = until

    def drop_pending(self, webhook_id: str) -> int:
        dropped = [
            d.delivery_id
            for d in self.rows.values()
            if d.webhook_id == webhook_id and not d.status.finished
        ]
        for delivery_id in dropped:
            del self.rows[delivery_id]
        return len(dropped)


class FakeNotifications(NotificationRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Notification] = {}

    def add_if_absent(self, notification: Notification) -> bool:
        key = (notification.event_id, notification.recipient)
        if any((n.event_id, n.recipient) == key for n in self.rows.values()):
            return False
        self.save(notification)
        return True

    def get(self, notification_id: str, *, for_update: bool = False) -> Notification | None:
        found = self.rows.get(notification_id)
        return copy.deepcopy(found) if found else None

    def save(self, notification: Notification) -> None:
        self.rows[notification.notification_id] = replace(copy.deepcopy(notification), events=[])

    def page(
        self, *, event_id: str, recipient: str, after: PageCursor | None, limit: int
    ) -> list[Notification]:
        found = sorted(
            (
                n
                for n in self.rows.values()
                if (not event_id or n.event_id == event_id)
                and (not recipient or n.recipient == recipient)
            ),
            key=lambda n: (n.created_at, n.notification_id),
            reverse=True,
        )
        if after is not None:
            found = [n for n in found if (n.created_at, n.notification_id) < _key(after)]
        return copy.deepcopy(found[:limit])

    def purge_finished(self, *, before: datetime, limit: int) -> int:
        old = sorted(
            (n for n in self.rows.values() if n.status.finished and n.created_at < before),
            key=lambda n: n.created_at,
        )[:limit]
        for notification in old:
            del self.rows[notification.notification_id]
        return len(old)

    def due(self, *, now: datetime, limit: int) -> list[Notification]:
        due = sorted(
            (
                n
                for n in self.rows.values()
                if n.status in (NotificationStatus.PENDING, NotificationStatus.SENDING)
                and n.next_attempt_at is not None
                and n.next_attempt_at <= now
            ),
            key=lambda n: n.next_attempt_at or now,
        )[:limit]
        return copy.deepcopy(due)


def _key(cursor: PageCursor) -> tuple[datetime, str]:
    return cursor.created_at, cursor.item_id


class FakeUnitOfWork(UnitOfWork):
    """Shares its repositories across units; rolls them back unless committed."""

    webhooks: FakeWebhooks
    deliveries: FakeDeliveries
    notifications: FakeNotifications

    def __init__(self) -> None:
        super().__init__()
        self.webhooks = FakeWebhooks()
        self.deliveries = FakeDeliveries(self.webhooks)
        self.notifications = FakeNotifications()
        self.published: list[Message] = []
        self.pending: list[Message] = []
        self.commits = 0
        self.lock = threading.RLock()
        self._snapshot: tuple[dict[str, Webhook], dict[str, Delivery], dict[str, Notification]]
        self._snapshot = ({}, {}, {})

    def __call__(self) -> Self:
        """Act as the factory of units of work (they all share these repositories)."""
        return self

    def __enter__(self) -> Self:
        self.lock.acquire()
        self._snapshot = copy.deepcopy(
            (self.webhooks.rows, self.deliveries.rows, self.notifications.rows)
        )
        self.pending = []
        return super().__enter__()

    def __exit__(self, *args: object) -> None:
        try:
            super().__exit__(*args)  # type: ignore[arg-type]
        finally:
            self.lock.release()

    def record(self, payload: Message, *, subject: str) -> None:
        self.pending.append(payload)

    def _commit(self) -> None:
        self.commits += 1
        self.published += self.pending
        self.pending = []
        self._snapshot = copy.deepcopy(
            (self.webhooks.rows, self.deliveries.rows, self.notifications.rows)
        )

    def rollback(self) -> None:
        webhooks, deliveries, notifications = self._snapshot
        self.webhooks.rows = copy.deepcopy(webhooks)
        self.deliveries.rows = copy.deepcopy(deliveries)
        self.notifications.rows = copy.deepcopy(notifications)
        self.pending = []

    def types(self) -> list[str]:
        return [type(m).__name__ for m in self.published]


class FakeResolver(Resolver):
    """Host → addresses; a host it does not know does not resolve. Answers can be changed."""

    def __init__(self, answers: Mapping[str, list[str]] | None = None) -> None:
        self.answers = dict(answers or {})
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise ResolutionFailed("Name or service not known")
        return list(self.answers[host])


@dataclass
class Sent:
    target: PinnedTarget
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class FakeTransport(WebhookTransport):
    """Answers per host: a status, or an exception to raise; optional delay per host."""

    statuses: dict[str, int | Exception] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def post(self, target: PinnedTarget, headers: Mapping[str, str], body: bytes) -> int:
        time.sleep(self.delays.get(target.host, 0))
        self.sent.append(Sent(target, dict(headers), body, time.monotonic()))
        answer = self.statuses.get(target.host, 200)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def to(self, host: str) -> list[Sent]:
        return [s for s in self.sent if s.target.host == host]


@dataclass
class FakeMailer(Mailer):
    fail_with: MailError | None = None
    sent: list[dict[str, str]] = field(default_factory=list)

    def send(
        self, *, notification_id: str, recipient: str, subject: str, text: str, html: str
    ) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(
            {
                "notification_id": notification_id,
                "recipient": recipient,
                "subject": subject,
                "text": text,
                "html": html,
            }
        )
        return f"msg-{len(self.sent)}"


@dataclass
class FakeFiles(FilesClient):
    down: bool = False
    asked: list[str] = field(default_factory=list)

    def download_url(self, file_id: str) -> str:
        self.asked.append(file_id)
        if self.down:
            raise FilesUnavailable("files: UNAVAILABLE")
        return f"https://files.example/{file_id}?signature=abc"
