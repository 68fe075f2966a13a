"""What the use cases need from storage: the recorded provider events, in a unit of work."""

from __future__ import annotations

import abc
from datetime import datetime

from eventforge.ingest.domain.model import ProviderEvent
from eventforge.runtime.unit_of_work import AsyncUnitOfWork as BaseAsyncUnitOfWork


class ProviderEvents(abc.ABC):
    """The provider events recorded so far, one per (source, provider event id)."""

    @abc.abstractmethod
    async def add(
        self, event: ProviderEvent, *, received_at: datetime, request_id: str | None
    ) -> bool:
        """Record the event; False (and nothing written) when its id was recorded before."""


class AsyncUnitOfWork(BaseAsyncUnitOfWork[ProviderEvent]):
    """One transaction: the provider event and the EventForge event it becomes, or nothing."""

    provider_events: ProviderEvents
