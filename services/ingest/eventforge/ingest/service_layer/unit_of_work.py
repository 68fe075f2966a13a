"""The unit of work of a delivery: the provider event's row and its outbox row, in one
transaction on an asyncio connection of the ingest schema."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from eventforge.ingest.adapters.repository import AsyncSqlProviderEvents
from eventforge.ingest.domain.model import ProviderEvent
from eventforge.ingest.service_layer.events import to_payload
from eventforge.ingest.service_layer.ports import AsyncUnitOfWork
from eventforge.runtime.unit_of_work import AsyncSqlEventUnitOfWork


class AsyncSqlUnitOfWork(AsyncSqlEventUnitOfWork[ProviderEvent], AsyncUnitOfWork):
    """Its own connection and transaction; `commit` records the tracked events' outbox rows."""

    service = "ingest"

    async def bind(self, connection: AsyncConnection) -> None:
        self.provider_events = AsyncSqlProviderEvents(connection)

    def outgoing(self, entity: ProviderEvent, event: Any) -> tuple[Message, str]:
        del event  # a provider event becomes exactly one EventForge event: its outcome's
        return to_payload(entity)
