"""The declared webhook sources: who may post to `/webhooks/{name}`, signed how, saying what.

A source declares its name, its signature scheme, how to read a delivery's id, type, time and
data, and the event types it accepts, each with the EventForge event it becomes. Its shared
secret is configuration (INGEST_SECRETS, or a Secrets Manager secret in the cloud).

- `payments`, the payment provider (Stripe-style): `Webhook-Signature: t=…,v1=…` over
  `t.body`; body `{"id", "type", "created", "data": {"payment_id", ...}}`.
- `acquirer`, the card acquirer (GitHub-style): `X-Signature: sha256=…` over the body, the
  event's id and type in `X-Event-Id` and `X-Event-Type`; body `{"payment_reference",
  "occurred_at", ...}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from eventforge.ingest.domain import payloads
from eventforge.ingest.domain.model import (
    PaymentFailed,
    PaymentOutcome,
    PaymentSucceeded,
    ProviderEvent,
)
from eventforge.ingest.domain.payloads import JsonObject, member
from eventforge.ingest.domain.refusals import MalformedPayload
from eventforge.ingest.domain.signatures import BodyHmac, SignatureScheme, TimestampedHmac

DEFAULT_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Delivery:
    """The parts every source's deliveries have, read from its headers and body."""

    event_id: str
    event_type: str
    occurred_at: datetime
    data: JsonObject


@dataclass(frozen=True)
class Ignored:
    """A verified delivery of a type its source sends but EventForge does not consume."""

    provider_event_id: str
    provider_event_type: str


Reader = Callable[[Mapping[str, str], bytes], Delivery]
Mapper = Callable[[JsonObject], PaymentOutcome]


@dataclass(frozen=True)
class Source:
    """One provider that posts webhooks to ingest."""

    name: str
    description: str
    scheme: SignatureScheme
    read: Reader
    accepts: Mapping[str, Mapper]
    """Provider event type → what its data becomes; other types are acknowledged and ignored."""

    def understand(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent | Ignored:
        """The provider event a verified delivery carries (or that it is of an ignored type)."""
        delivery = self.read(headers, body)
        mapper = self.accepts.get(delivery.event_type)
        if mapper is None:
            return Ignored(delivery.event_id, delivery.event_type)
        return ProviderEvent.received(
            source=self.name,
            provider_event_id=delivery.event_id,
            provider_event_type=delivery.event_type,
            occurred_at=delivery.occurred_at,
            outcome=mapper(delivery.data),
        )


def _read_payments(headers: Mapping[str, str], body: bytes) -> Delivery:
    del headers
    document = payloads.json_object(body)
    return Delivery(
        event_id=payloads.identifier(member(document, "id", str), "id"),
        event_type=member(document, "type", str),
        occurred_at=payloads.unix_time(member(document, "created", int), "created"),
        data=member(document, "data", dict),
    )


def _payment_succeeded(data: JsonObject) -> PaymentOutcome:
    return PaymentSucceeded(
        payment_id=payloads.identifier(member(data, "payment_id", str, "data."), "payment_id"),
        amount_minor=payloads.amount_minor(member(data, "amount_minor", int, "data.")),
        currency=payloads.currency(member(data, "currency", str, "data.")),
    )


def _payment_failed(data: JsonObject) -> PaymentOutcome:
    return PaymentFailed(
        payment_id=payloads.identifier(member(data, "payment_id", str, "data."), "payment_id"),
        reason=payloads.reason(member(data, "reason", str, "data.")),
    )


ACQUIRER_EVENT_ID = "X-Event-Id"
ACQUIRER_EVENT_TYPE = "X-Event-Type"


def _read_acquirer(headers: Mapping[str, str], body: bytes) -> Delivery:
    event_id = headers.get(ACQUIRER_EVENT_ID.lower(), "")
    event_type = headers.get(ACQUIRER_EVENT_TYPE.lower(), "")
    if not event_id or not event_type:
        raise MalformedPayload(f"{ACQUIRER_EVENT_ID} and {ACQUIRER_EVENT_TYPE} are required")
    document = payloads.json_object(body)
    return Delivery(
        event_id=payloads.identifier(event_id, ACQUIRER_EVENT_ID),
        event_type=event_type,
        occurred_at=payloads.iso_time(member(document, "occurred_at", str), "occurred_at"),
        data=document,
    )


def _capture_completed(data: JsonObject) -> PaymentOutcome:
    return PaymentSucceeded(
        payment_id=payloads.identifier(member(data, "payment_reference", str), "payment_reference"),
        amount_minor=payloads.amount_minor(member(data, "amount_minor", int)),
        currency=payloads.currency(member(data, "currency", str)),
    )


def _capture_declined(data: JsonObject) -> PaymentOutcome:
    return PaymentFailed(
        payment_id=payloads.identifier(member(data, "payment_reference", str), "payment_reference"),
        reason=payloads.reason(member(data, "decline_reason", str)),
    )


def declared_sources(tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS) -> dict[str, Source]:
    """Every source by name; `tolerance_seconds` bounds the signed timestamps' age."""
    sources = (
        Source(
            name="payments",
            description="The payment provider: out-of-band outcomes of charges.",
            scheme=TimestampedHmac("Webhook-Signature", tolerance_seconds),
            read=_read_payments,
            accepts={
                "payment.succeeded": _payment_succeeded,
                "payment.failed": _payment_failed,
            },
        ),
        Source(
            name="acquirer",
            description="The card acquirer: captures completed or declined.",
            scheme=BodyHmac("X-Signature"),
            read=_read_acquirer,
            accepts={
                "capture.completed": _capture_completed,
                "capture.declined": _capture_declined,
            },
        ),
    )
    return {source.name: source for source in sources}
