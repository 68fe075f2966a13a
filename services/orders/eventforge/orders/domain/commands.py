"""Commands the orders service accepts, in the imperative."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestedLine:
    sku: str
    quantity: int
    unit_price_minor: int
    currency: str


@dataclass(frozen=True)
class PlaceOrder:
    idempotency_key: str
    customer_id: str
    customer_email: str
    currency: str
    payment_token: str
    lines: tuple[RequestedLine, ...]


@dataclass(frozen=True)
class CancelOrder:
    order_id: str
    reason: str


@dataclass(frozen=True)
class ConfirmPayment:
    """The provider settled a pending charge (its payment.succeeded)."""

    payment_id: str
    provider: str
    amount_minor: int
    currency: str
    """Empty when the provider's event carries no amount."""


@dataclass(frozen=True)
class RefusePayment:
    """The provider refused a pending charge (its payment.failed)."""

    payment_id: str
    provider: str
    reason: str
