"""The order aggregate: lines, money in minor units, and saga transitions that record events."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    INVENTORY_RESERVED = "INVENTORY_RESERVED"
    PAYMENT_CHARGED = "PAYMENT_CHARGED"
    CONFIRMED = "CONFIRMED"
    COMPENSATING = "COMPENSATING"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        OrderStatus.CONFIRMED,
        OrderStatus.FAILED,
        OrderStatus.CANCELLED,
        OrderStatus.COMPENSATION_FAILED,
    }
)


class InvalidTransition(Exception):
    """A saga transition that the order's current status does not allow."""


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


# Domain events, past tense; the service layer turns them into published events.
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@dataclass(frozen=True)
class OrderConfirmed:
    order_id: str


@dataclass(frozen=True)
class OrderFailed:
    order_id: str
    step: str
    reason: str


@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    reason: str


@dataclass(frozen=True)
class CompensationFailed:
    order_id: str
    compensation: str
    reason: str


Event = OrderPlaced | OrderConfirmed | OrderFailed | OrderCancelled | CompensationFailed


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Order:
    """An order and the saga progress persisted with it, so any worker can resume it."""

    order_id: str
    customer_id: str
    customer_email: str
    currency: str
    lines: list[OrderLine]
    payment_token: str
    status: OrderStatus = OrderStatus.PENDING
    failure_reason: str = ""
    failed_step: str = ""
    reserved: bool = False
    payment_id: str = ""
    refunded: bool = False
    cancel_requested: bool = False
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    cause: Mapping[str, str] = field(default_factory=dict)
    """The trace context (W3C headers) of the request that placed it."""
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def place(
        cls,
        *,
        order_id: str,
        customer_id: str,
        customer_email: str,
        currency: str,
        lines: list[OrderLine],
        payment_token: str,
        cause: Mapping[str, str] | None = None,
    ) -> Order:
        """A new PENDING order; records OrderPlaced."""
        order = cls(order_id, customer_id, customer_email, currency, lines, payment_token)
        order.cause = dict(cause or {})
        order.events.append(OrderPlaced(order_id))
        return order

    @property
    def total_minor(self) -> int:
        return sum(line.total_minor for line in self.lines)

    def _move(self, allowed: set[OrderStatus], to: OrderStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"order {self.order_id}: {self.status.value} → {to.value}")
        self.status = to
        self.updated_at = _now()

    def inventory_reserved(self) -> None:
        self._move({OrderStatus.PENDING}, OrderStatus.INVENTORY_RESERVED)
        self.reserved = True

    def payment_charged(self, payment_id: str) -> None:
        """Record a charge. One that lands after a cancel or failure is kept, to be refunded."""
        late = {OrderStatus.COMPENSATING, OrderStatus.CANCELLED, OrderStatus.FAILED}
        if self.status in late:
            self.payment_id = payment_id
            self.updated_at = _now()
            return
        self._move({OrderStatus.INVENTORY_RESERVED}, OrderStatus.PAYMENT_CHARGED)
        self.payment_id = payment_id

    @property
    def needs_refund(self) -> bool:
        """A charge exists that the order's outcome no longer justifies.

        Not after COMPENSATION_FAILED: that order waits for an operator, not for retries.
        """
        kept = {OrderStatus.PAYMENT_CHARGED, OrderStatus.CONFIRMED, OrderStatus.COMPENSATION_FAILED}
        return bool(self.payment_id) and not self.refunded and self.status not in kept

    def confirm(self) -> None:
        self._move({OrderStatus.PAYMENT_CHARGED}, OrderStatus.CONFIRMED)
        self.events.append(OrderConfirmed(self.order_id))

    def step_failed(self, step: str, reason: str) -> None:
        """A step failed permanently: compensate what was done, or fail at once if nothing was."""
        active = {OrderStatus.PENDING, OrderStatus.INVENTORY_RESERVED, OrderStatus.PAYMENT_CHARGED}
        self.failed_step, self.failure_reason = step, reason
        if self.reserved or self.payment_id:
            self._move(active, OrderStatus.COMPENSATING)
        else:
            self._move(active, OrderStatus.FAILED)
            self.events.append(OrderFailed(self.order_id, step, reason))

    def request_cancel(self, reason: str) -> bool:
        """Cancel before confirmation; returns False when already cancelled (idempotent)."""
        if self.status is OrderStatus.CANCELLED or self.cancel_requested:
            return False
        if self.status.terminal:
            raise InvalidTransition(f"order {self.order_id} is {self.status.value}")
        self.cancel_requested = True
        self.failure_reason = reason
        if self.reserved or self.payment_id:
            self._move({self.status}, OrderStatus.COMPENSATING)
        else:
            self._move({self.status}, OrderStatus.CANCELLED)
            self.events.append(OrderCancelled(self.order_id, reason))
        return True

    def refund_done(self) -> None:
        if not self.payment_id:
            raise InvalidTransition(f"order {self.order_id} has no charge to refund")
        self.refunded = True
        self.updated_at = _now()

    def release_done(self) -> None:
        self._require_compensating()
        self.reserved = False

    def compensated(self) -> None:
        """Every compensation is done: end CANCELLED or FAILED."""
        self._require_compensating()
        if self.needs_refund or self.reserved:
            raise InvalidTransition(f"order {self.order_id} still has steps to compensate")
        if self.cancel_requested:
            self._move({OrderStatus.COMPENSATING}, OrderStatus.CANCELLED)
            self.events.append(OrderCancelled(self.order_id, self.failure_reason))
        else:
            self._move({OrderStatus.COMPENSATING}, OrderStatus.FAILED)
            self.events.append(OrderFailed(self.order_id, self.failed_step, self.failure_reason))

    def compensation_failed(self, compensation: str, reason: str) -> None:
        """A compensation failed for good: the order needs an operator (alarmed)."""
        allowed = {OrderStatus.COMPENSATING, OrderStatus.CANCELLED, OrderStatus.FAILED}
        self._move(allowed, OrderStatus.COMPENSATION_FAILED)
        self.events.append(CompensationFailed(self.order_id, compensation, reason))

    def _require_compensating(self) -> None:
        if self.status is not OrderStatus.COMPENSATING:
            raise InvalidTransition(f"order {self.order_id} is not compensating")
