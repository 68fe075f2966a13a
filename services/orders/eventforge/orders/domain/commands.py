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
