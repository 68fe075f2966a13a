"""The EventForge events ingest publishes, from the payment outcomes providers report."""

from __future__ import annotations

from google.protobuf.message import Message

from eventforge.common.v1.money_pb2 import Money
from eventforge.events.v1 import events_pb2
from eventforge.ingest.domain.model import PaymentSucceeded, ProviderEvent


def to_payload(event: ProviderEvent) -> tuple[Message, str]:
    """The event's message for the outbox, and its subject (the payment id)."""
    outcome = event.outcome
    if isinstance(outcome, PaymentSucceeded):
        payload: Message = events_pb2.PaymentSucceeded(
            payment_id=outcome.payment_id,
            provider=event.source,
            provider_event_id=event.provider_event_id,
            amount=Money(amount_minor=outcome.amount_minor, currency=outcome.currency),
        )
    else:
        payload = events_pb2.PaymentFailed(
            payment_id=outcome.payment_id,
            provider=event.source,
            provider_event_id=event.provider_event_id,
            reason=outcome.reason,
        )
    return payload, outcome.payment_id
