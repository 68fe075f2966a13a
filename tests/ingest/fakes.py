"""Fakes of ingest's ports, for the use cases without a database."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Self

from eventforge.ingest.domain.model import PaymentOutcome, ProviderEvent
from eventforge.ingest.service_layer.ports import AsyncUnitOfWork, ProviderEvents


class FakeProviderEvents(ProviderEvents):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], ProviderEvent] = {}
        self.pending: dict[tuple[str, str], ProviderEvent] = {}

    async def add(
        self, event: ProviderEvent, *, received_at: datetime, request_id: str | None
    ) -> bool:
        key = (event.source, event.provider_event_id)
        if key in self.rows or key in self.pending:
            return False
        self.pending[key] = event
        return True


class FakeUnitOfWork(AsyncUnitOfWork):
    """Keeps what was committed: the provider events and the outcomes recorded as events."""

    provider_events: FakeProviderEvents

    def __init__(self) -> None:
        self.provider_events = FakeProviderEvents()
        self.published: list[PaymentOutcome] = []
        self.seen: list[ProviderEvent] = []

    async def __aenter__(self) -> Self:
        self.seen = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.provider_events.pending.clear()

    def track(self, entity: ProviderEvent) -> ProviderEvent:
        self.seen.append(entity)
        return entity

    async def commit(self) -> None:
        for entity in self.seen:
            self.published += entity.events
            entity.events.clear()
        self.provider_events.rows.update(self.provider_events.pending)
        self.provider_events.pending.clear()
