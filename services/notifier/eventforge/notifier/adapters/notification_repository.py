"""SQL implementation of the notifications (emails) repository, on the unit of work's session."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from eventforge.notifier.adapters.repository import (
    insert_if_absent,
    is_postgres,
    utc,
    utc_or_none,
)
from eventforge.notifier.adapters.tables import notifications
from eventforge.notifier.domain.model import Notification, NotificationStatus
from eventforge.notifier.service_layer.ports import NotificationRepository, PageCursor
from eventforge.runtime import deferred

_NOTIFICATION_FIELDS = (
    "notification_id",
    "event_id",
    "event_type",
    "channel",
    "recipient",
    "subject",
    "text_body",
    "html_body",
    "attempts",
    "provider_message_id",
    "last_error",
    "created_at",
    "sent_at",
    "next_attempt_at",
)


_FINISHED = [s.value for s in NotificationStatus if s.finished]
# SENDING rows are due again once their lease has run out with nothing recorded.
_DUE = [NotificationStatus.PENDING.value, NotificationStatus.SENDING.value]


class SqlNotifications(NotificationRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_if_absent(self, notification: Notification) -> bool:
        statement = sa.insert(notifications).values(**self._row(notification))
        return insert_if_absent(self.session, statement)

    def get(self, notification_id: str, *, for_update: bool = False) -> Notification | None:
        query = sa.select(notifications).where(notifications.c.notification_id == notification_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).mappings().one_or_none()
        return self._load(row) if row is not None else None

    def save(self, notification: Notification) -> None:
        values = self._row(notification)
        for fixed in ("notification_id", "event_id", "recipient", "created_at"):
            del values[fixed]
        self.session.execute(
            sa.update(notifications)
            .where(notifications.c.notification_id == notification.notification_id)
            .values(**values)
        )

    def page(
        self, *, event_id: str, recipient: str, after: PageCursor | None, limit: int
    ) -> list[Notification]:
        query = sa.select(notifications)
        if event_id:
            query = query.where(notifications.c.event_id == event_id)
        if recipient:
            query = query.where(notifications.c.recipient == recipient)
        if after is not None:
            query = query.where(
                sa.tuple_(notifications.c.created_at, notifications.c.notification_id)
                < sa.tuple_(sa.literal(after.created_at), sa.literal(after.item_id))
            )
        query = query.order_by(
            notifications.c.created_at.desc(), notifications.c.notification_id.desc()
        ).limit(limit)
        return [self._load(row) for row in self.session.execute(query).mappings()]

    def purge_finished(self, *, before: datetime, limit: int) -> int:
        old = (
            sa.select(notifications.c.notification_id)
            .where(
                notifications.c.status.in_(_FINISHED),
                notifications.c.created_at < before,
            )
            .order_by(notifications.c.created_at)
            .limit(limit)
        )
        ids = list(self.session.scalars(old))
        if ids:
            self.session.execute(
                sa.delete(notifications).where(notifications.c.notification_id.in_(ids))
            )
        return len(ids)

    def due(self, *, now: datetime, limit: int) -> list[Notification]:
        query = (
            sa.select(notifications)
            .where(notifications.c.status.in_(_DUE))
            .where(notifications.c.next_attempt_at <= now)
            .order_by(notifications.c.next_attempt_at)
            .limit(limit)
        )
        if is_postgres(self.session):
            query = query.with_for_update(skip_locked=True)
        return [self._load(row) for row in self.session.execute(query).mappings()]

    @staticmethod
    def _row(notification: Notification) -> dict[str, Any]:
        row = {name: getattr(notification, name) for name in _NOTIFICATION_FIELDS}
        row["status"] = notification.status.value
        row["cause"] = deferred.dumps(notification.cause)
        return row

    @staticmethod
    def _load(row: RowMapping) -> Notification:
        fields = {name: row[name] for name in _NOTIFICATION_FIELDS}
        fields["created_at"] = utc(row["created_at"])
        fields["sent_at"] = utc_or_none(row["sent_at"])
        fields["next_attempt_at"] = utc_or_none(row["next_attempt_at"])
        fields["cause"] = deferred.loads(row["cause"])
        return Notification(status=NotificationStatus(row["status"]), **cast("Any", fields))
