"""What a verified delivery says: a payment's outcome, from one provider event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PaymentSucceeded:
    """The provider captured the payment (`payment.succeeded`)."""

    payment_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class PaymentFailed:
    """The provider refused the payment (`payment.failed`)."""

    payment_id: str
    reason: str


PaymentOutcome = PaymentSucceeded | PaymentFailed


@dataclass
class ProviderEvent:
    """One event a source delivered, verified and understood; recorded once per (source, id).

    `events` holds the EventForge event it becomes, until the unit of work records it.
    """

    source: str
    provider_event_id: str
    provider_event_type: str
    occurred_at: datetime
    outcome: PaymentOutcome
    events: list[PaymentOutcome] = field(default_factory=list)

    @classmethod
    def received(
        cls,
        *,
        source: str,
        provider_event_id: str,
        provider_event_type: str,
        occurred_at: datetime,
        outcome: PaymentOutcome,
    ) -> ProviderEvent:
        """A new delivery's event, with the EventForge event it becomes pending."""
        return cls(source, provider_event_id, provider_event_type, occurred_at, outcome, [outcome])

    @property
    def event_type(self) -> str:
        """The EventForge event type it becomes."""
        succeeded = isinstance(self.outcome, PaymentSucceeded)
        return "payment.succeeded" if succeeded else "payment.failed"
