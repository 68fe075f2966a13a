"""Receive one webhook delivery: verify, understand, and record it once (or refuse it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from eventforge.ingest.domain.refusals import StaleEvent, UnknownSource
from eventforge.ingest.domain.sources import Ignored, Source
from eventforge.ingest.service_layer.ports import AsyncUnitOfWork
from eventforge.runtime.context import current_request_id

Outcome = Literal["recorded", "duplicate", "ignored"]


@dataclass(frozen=True)
class Receipt:
    """What became of an accepted delivery."""

    outcome: Outcome
    """`recorded` (its event will be published), `duplicate` (recorded before: nothing new),
    `ignored` (a type the source sends that EventForge does not consume)."""
    source: str
    provider_event_id: str
    provider_event_type: str
    event_type: str | None
    """The EventForge event it became (None when ignored)."""


@dataclass(frozen=True)
class Inbound:
    """The declared sources and their secrets, and how old an event may be."""

    sources: Mapping[str, Source]
    secrets: Mapping[str, Sequence[str]]
    retention: timedelta
    """How long provider event ids are kept: an older event could be a replay nobody recalls."""

    def source(self, name: str) -> Source:
        """The declared source `name`, or UnknownSource."""
        source = self.sources.get(name)
        if source is None:
            raise UnknownSource(f"no webhook source {name[:64]!r}")
        return source


async def receive(
    *,
    inbound: Inbound,
    source_name: str,
    headers: Mapping[str, str],
    body: bytes,
    uow: AsyncUnitOfWork,
    now: datetime,
) -> Receipt:
    """Verify the delivery's signature, map its payload to an EventForge event, and record the
    provider event with that event's outbox row in one transaction; a `Refused` error says why
    not. A provider event recorded before is a duplicate: acknowledged, nothing recorded."""
    source = inbound.source(source_name)
    source.scheme.verify(headers, body, inbound.secrets[source.name], now.timestamp())
    understood = source.understand(headers, body)
    if isinstance(understood, Ignored):
        event_id, event_type = understood.provider_event_id, understood.provider_event_type
        return Receipt("ignored", source.name, event_id, event_type, None)
    if understood.occurred_at < now - inbound.retention:
        raise StaleEvent(
            f"event {understood.provider_event_id} occurred at {understood.occurred_at:%Y-%m-%d}, "
            f"longer ago than ingest remembers event ids ({inbound.retention.days} days)"
        )
    outcome: Outcome = "duplicate"
    async with uow:
        if await uow.provider_events.add(
            understood, received_at=now, request_id=current_request_id()
        ):
            uow.track(understood)
            await uow.commit()
            outcome = "recorded"
    return Receipt(
        outcome,
        source.name,
        understood.provider_event_id,
        understood.provider_event_type,
        understood.event_type,
    )
