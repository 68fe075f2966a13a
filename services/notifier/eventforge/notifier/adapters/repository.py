"""SQL repositories of webhooks and deliveries, on one session (the unit of work's)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eventforge.notifier.adapters.tables import (
    deliveries,
    delivery_attempts,
    webhook_event_types,
    webhooks,
)
from eventforge.notifier.domain.model import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Webhook,
    WebhookStatus,
)
from eventforge.notifier.service_layer.ports import (
    DeliveryRepository,
    DueDelivery,
    PageCursor,
    WebhookRepository,
)
from eventforge.runtime import deferred

_UNFINISHED = (DeliveryStatus.PENDING.value, DeliveryStatus.RETRYING.value)
_FINISHED = (DeliveryStatus.SUCCEEDED.value, DeliveryStatus.FAILED.value)


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc_or_none(moment: datetime | None) -> datetime | None:
    return utc(moment) if moment is not None else None


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_if_absent(session: Session, statement: sa.Insert) -> bool:
    """Run an insert in a savepoint; False when it hit a unique constraint."""
    try:
        with session.begin_nested():
            session.execute(statement)
    except IntegrityError:
        return False
    return True


class SqlWebhooks(WebhookRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, webhook: Webhook) -> None:
        self.session.execute(sa.insert(webhooks).values(**self._row(webhook)))
        self.session.execute(
            sa.insert(webhook_event_types),
            [{"webhook_id": webhook.webhook_id, "event_type": t} for t in webhook.event_types],
        )

    def get(self, webhook_id: str, *, for_update: bool = False) -> Webhook | None:
        query = sa.select(webhooks).where(webhooks.c.webhook_id == webhook_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).mappings().one_or_none()
        return self._load([row])[0] if row is not None else None

    def save(self, webhook: Webhook) -> None:
        values = self._row(webhook)
        del values["webhook_id"], values["created_at"]
        self.session.execute(
            sa.update(webhooks).where(webhooks.c.webhook_id == webhook.webhook_id).values(**values)
        )

    def page(self, *, after: PageCursor | None, limit: int) -> list[Webhook]:
        query = sa.select(webhooks).where(webhooks.c.deleted_at.is_(None))
        if after is not None:
            query = query.where(
                sa.tuple_(webhooks.c.created_at, webhooks.c.webhook_id)
                > sa.tuple_(sa.literal(after.created_at), sa.literal(after.item_id))
            )
        query = query.order_by(webhooks.c.created_at, webhooks.c.webhook_id).limit(limit)
        return self._load(list(self.session.execute(query).mappings()))

    def subscribed_to(self, event_type: str) -> list[Webhook]:
        query = (
            sa.select(webhooks)
            .join(webhook_event_types, webhook_event_types.c.webhook_id == webhooks.c.webhook_id)
            .where(webhook_event_types.c.event_type == event_type)
            .where(webhooks.c.deleted_at.is_(None))
            .order_by(webhooks.c.created_at)
        )
        return self._load(list(self.session.execute(query).mappings()))

    @staticmethod
    def _row(webhook: Webhook) -> dict[str, Any]:
        return {
            "webhook_id": webhook.webhook_id,
            "url": webhook.url,
            "secret": webhook.secret,
            "description": webhook.description,
            "status": webhook.status.value,
            "consecutive_failures": webhook.consecutive_failures,
            "last_error": webhook.last_error,
            "created_at": webhook.created_at,
            "deleted_at": webhook.deleted_at,
        }

    def _load(self, rows: Sequence[RowMapping]) -> list[Webhook]:
        ids = [row["webhook_id"] for row in rows]
        types: dict[str, list[str]] = {webhook_id: [] for webhook_id in ids}
        query = (
            sa.select(webhook_event_types)
            .where(webhook_event_types.c.webhook_id.in_(ids))
            .order_by(webhook_event_types.c.webhook_id, webhook_event_types.c.event_type)
        )
        for found in self.session.execute(query).mappings():
            types[found["webhook_id"]].append(found["event_type"])
        return [
            Webhook(
                webhook_id=row["webhook_id"],
                url=row["url"],
                event_types=tuple(types[row["webhook_id"]]),
                secret=row["secret"],
                description=row["description"],
                created_at=utc(row["created_at"]),
                status=WebhookStatus(row["status"]),
                consecutive_failures=row["consecutive_failures"],
                last_error=row["last_error"],
                deleted_at=utc_or_none(row["deleted_at"]),
            )
            for row in rows
        ]


class SqlDeliveries(DeliveryRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_if_absent(self, delivery: Delivery) -> bool:
        statement = sa.insert(deliveries).values(
            delivery_id=delivery.delivery_id,
            webhook_id=delivery.webhook_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            body=delivery.body,
            status=delivery.status.value,
            next_attempt_at=delivery.next_attempt_at,
            created_at=delivery.created_at,
            updated_at=delivery.created_at,
            cause=deferred.dumps(delivery.cause),
        )
        return insert_if_absent(self.session, statement)

    def get(self, delivery_id: str, *, for_update: bool = False) -> Delivery | None:
        query = sa.select(deliveries).where(deliveries.c.delivery_id == delivery_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).mappings().one_or_none()
        return self._load([row])[0] if row is not None else None

    def save(self, delivery: Delivery) -> None:
        self.session.execute(
            sa.update(deliveries)
            .where(deliveries.c.delivery_id == delivery.delivery_id)
            .values(
                status=delivery.status.value,
                next_attempt_at=delivery.next_attempt_at,
                updated_at=datetime.now(UTC),
            )
        )
        stored = self.session.scalar(
            sa.select(sa.func.coalesce(sa.func.max(delivery_attempts.c.attempt_number), 0)).where(
                delivery_attempts.c.delivery_id == delivery.delivery_id
            )
        )
        new = [a for a in delivery.attempts if a.number > (stored or 0)]
        if new:
            self.session.execute(
                sa.insert(delivery_attempts),
                [
                    {
                        "delivery_id": delivery.delivery_id,
                        "attempt_number": a.number,
                        "http_status": a.http_status,
                        "latency_ms": a.latency_ms,
                        "error": a.error,
                        "attempted_at": a.attempted_at,
                    }
                    for a in new
                ],
            )

    def page(
        self, *, webhook_id: str, event_id: str, after: PageCursor | None, limit: int
    ) -> list[Delivery]:
        query = sa.select(deliveries)
        if webhook_id:
            query = query.where(deliveries.c.webhook_id == webhook_id)
        if event_id:
            query = query.where(deliveries.c.event_id == event_id)
        if after is not None:
            query = query.where(
                sa.tuple_(deliveries.c.created_at, deliveries.c.delivery_id)
                < sa.tuple_(sa.literal(after.created_at), sa.literal(after.item_id))
            )
        query = query.order_by(
            deliveries.c.created_at.desc(), deliveries.c.delivery_id.desc()
        ).limit(limit)
        return self._load(list(self.session.execute(query).mappings()))

    def due(self, *, now: datetime, limit: int) -> list[DueDelivery]:
        attempts = (
            sa.select(sa.func.count())
            .where(delivery_attempts.c.delivery_id == deliveries.c.delivery_id)
            .scalar_subquery()
        )
        query = (
            sa.select(
                deliveries.c.delivery_id,
                deliveries.c.webhook_id,
                webhooks.c.url,
                webhooks.c.secret,
                deliveries.c.event_id,
                deliveries.c.event_type,
                deliveries.c.body,
                deliveries.c.created_at,
                deliveries.c.cause,
                attempts.label("attempts"),
            )
            .join(webhooks, webhooks.c.webhook_id == deliveries.c.webhook_id)
            .where(deliveries.c.status.in_(_UNFINISHED))
            .where(deliveries.c.next_attempt_at <= now)
            .where(webhooks.c.deleted_at.is_(None))
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
        )
        if is_postgres(self.session):
            query = query.with_for_update(of=deliveries, skip_locked=True)
        return [
            DueDelivery(
                delivery_id=row.delivery_id,
                webhook_id=row.webhook_id,
                url=row.url,
                secret=row.secret,
                event_id=row.event_id,
                event_type=row.event_type,
                body=row.body,
                attempt_number=int(row.attempts) + 1,
                created_at=utc(row.created_at),
                cause=deferred.loads(row.cause),
            )
            for row in self.session.execute(query)
        ]

    def lease(self, delivery_ids: Sequence[str], *, until: datetime) -> None:
        if delivery_ids:
            self.session.execute(
                sa.update(deliveries)
                .where(deliveries.c.delivery_id.in_(list(delivery_ids)))
                .values(next_attempt_at=until)
            )

    def purge_finished(self, *, before: datetime, limit: int) -> int:
        old = (
            sa.select(deliveries.c.delivery_id)
            .where(deliveries.c.status.in_(_FINISHED), deliveries.c.created_at < before)
            .order_by(deliveries.c.created_at)
            .limit(limit)
        )
        ids = list(self.session.scalars(old))
        if ids:
            self.session.execute(
                sa.delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(ids))
            )
            self.session.execute(sa.delete(deliveries).where(deliveries.c.delivery_id.in_(ids)))
        return len(ids)

    def drop_pending(self, webhook_id: str) -> int:
        pending = sa.select(deliveries.c.delivery_id).where(
            deliveries.c.webhook_id == webhook_id, deliveries.c.status.in_(_UNFINISHED)
        )
        ids = list(self.session.scalars(pending.with_for_update()))
        if not ids:
            return 0
        self.session.execute(
            sa.delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(ids))
        )
        self.session.execute(sa.delete(deliveries).where(deliveries.c.delivery_id.in_(ids)))
        return len(ids)

    def _load(self, rows: Sequence[RowMapping]) -> list[Delivery]:
        ids = [row["delivery_id"] for row in rows]
        attempts: dict[str, list[DeliveryAttempt]] = {delivery_id: [] for delivery_id in ids}
        query = (
            sa.select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id.in_(ids))
            .order_by(delivery_attempts.c.delivery_id, delivery_attempts.c.attempt_number)
        )
        for found in self.session.execute(query).mappings():
            attempts[found["delivery_id"]].append(
                DeliveryAttempt(
                    number=found["attempt_number"],
                    http_status=found["http_status"],
                    latency_ms=found["latency_ms"],
                    error=found["error"],
                    attempted_at=utc(found["attempted_at"]),
                )
            )
        return [
            Delivery(
                delivery_id=row["delivery_id"],
                webhook_id=row["webhook_id"],
                event_id=row["event_id"],
                event_type=row["event_type"],
                body=row["body"],
                created_at=utc(row["created_at"]),
                status=DeliveryStatus(row["status"]),
                attempts=attempts[row["delivery_id"]],
                next_attempt_at=utc_or_none(row["next_attempt_at"]),
                cause=deferred.loads(row["cause"]),
            )
            for row in rows
        ]
