"""The provider events ingest recorded, on SQLAlchemy Core (asyncio for the API, sync for jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from eventforge.ingest.adapters.tables import provider_events
from eventforge.ingest.domain.model import ProviderEvent
from eventforge.ingest.service_layer.ports import ProviderEvents

_KEY = provider_events.c.source


def _insert_new(dialect: str) -> sa.Insert:
    """INSERT … ON CONFLICT DO NOTHING: a concurrent delivery of the same event waits for the
    first one's transaction, then inserts nothing (or takes over if that one rolled back)."""
    # RETURNING says whether a row went in (rowcount is -1 with psycopg's asyncio cursors).
    if dialect == "postgresql":
        return postgresql.insert(provider_events).on_conflict_do_nothing().returning(_KEY)
    return sqlite.insert(provider_events).on_conflict_do_nothing().returning(_KEY)


class AsyncSqlProviderEvents(ProviderEvents):
    """Provider events on an asyncio connection inside the unit of work's transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._insert = _insert_new(connection.dialect.name)

    async def add(
        self, event: ProviderEvent, *, received_at: datetime, request_id: str | None
    ) -> bool:
        result = await self.connection.execute(
            self._insert,
            {
                "source": event.source,
                "provider_event_id": event.provider_event_id,
                "provider_event_type": event.provider_event_type,
                "payment_id": event.outcome.payment_id,
                "occurred_at": event.occurred_at,
                "received_at": received_at,
                "request_id": request_id,
            },
        )
        return result.first() is not None


def purge_received_before(session: Session, before: datetime) -> int:
    """Delete the provider events received before `before`; how many were."""
    old = provider_events.c.received_at < before
    deleted = cast("sa.CursorResult[Any]", session.execute(sa.delete(provider_events).where(old)))
    return int(deleted.rowcount)
