"""The order aggregate: lines, money in minor units, and saga transitions that record events."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    INVENTORY_RESERVED = "INVENTORY_RESERVED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAYMENT_CHARGED = "PAYMENT_CHARGED"
    CONFIRMED = "CONFIRMED"
    COMPENSATING = "COMPENSATING"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def waiting(self) -> bool:
        """Waiting on the payment provider (its event, or the deadline), not stalled."""
        return self is OrderStatus.PAYMENT_PENDING


TERMINAL = frozenset(
    {
        OrderStatus.CONFIRMED,
        OrderStatus.FAILED,
        OrderStatus.CANCELLED,
        OrderStatus.COMPENSATION_FAILED,
    }
)


# A charge that lands in these statuses is kept on the order, to be refunded.
_LATE = frozenset({OrderStatus.COMPENSATING, OrderStatus.CANCELLED, OrderStatus.FAILED})
_ACTIVE = frozenset(
    {
        OrderStatus.PENDING,
        OrderStatus.INVENTORY_RESERVED,
        OrderStatus.PAYMENT_PENDING,
        OrderStatus.PAYMENT_CHARGED,
    }
)

PAYMENT_TIMED_OUT = "payment confirmation timed out"


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
    """The provider's charge that holds (or, pending, may yet hold) the customer's money."""
    payment_due_at: datetime | None = None
    """While PAYMENT_PENDING: when the order stops waiting for the provider's confirmation."""
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

    def _move(self, allowed: Collection[OrderStatus], to: OrderStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"order {self.order_id}: {self.status.value} → {to.value}")
        self.status = to
        self.updated_at = _now()
        if to is not OrderStatus.PAYMENT_PENDING:
            self.payment_due_at = None

    def inventory_reserved(self) -> None:
        self._move({OrderStatus.PENDING}, OrderStatus.INVENTORY_RESERVED)
        self.reserved = True

    def payment_charged(self, payment_id: str) -> None:
        """Record a charge. One that lands after a cancel or failure is kept, to be refunded."""
        if not self._kept_late(payment_id):
            self._move({OrderStatus.INVENTORY_RESERVED}, OrderStatus.PAYMENT_CHARGED)
            self.payment_id = payment_id

    def payment_pending(self, payment_id: str, *, due_at: datetime) -> None:
        """The provider accepted the charge and confirms it later: wait for it until `due_at`."""
        if not self._kept_late(payment_id):
            self._move({OrderStatus.INVENTORY_RESERVED}, OrderStatus.PAYMENT_PENDING)
            self.payment_id, self.payment_due_at = payment_id, due_at

    def payment_confirmed(self) -> None:
        """The provider confirmed the pending charge (its payment.succeeded)."""
        self._move({OrderStatus.PAYMENT_PENDING}, OrderStatus.PAYMENT_CHARGED)

    def payment_refused(self, reason: str) -> None:
        """The provider refused the pending charge (its payment.failed): no money was taken, so
        there is nothing to refund, as after a declined charge."""
        self._require(OrderStatus.PAYMENT_PENDING)
        self.payment_id = ""
        self.step_failed("charge_payment", f"payment failed: {reason}")

    def payment_overdue(self, now: datetime) -> bool:
        """Still waiting for the payment's confirmation at its deadline."""
        due = self.payment_due_at
        return self.status is OrderStatus.PAYMENT_PENDING and (due is None or due <= now)

    def payment_timed_out(self, now: datetime) -> None:
        """No confirmation by the deadline: compensate (the pending charge is voided)."""
        self._require(OrderStatus.PAYMENT_PENDING)
        if not self.payment_overdue(now):
            raise InvalidTransition(f"order {self.order_id}: its payment is not due yet")
        self.step_failed("charge_payment", PAYMENT_TIMED_OUT)

    def _kept_late(self, payment_id: str) -> bool:
        """A charge answered after a cancel or failure: keep it, to be refunded (or voided)."""
        if self.status not in _LATE:
            return False
        self.payment_id = payment_id
        self.updated_at = _now()
        return True

    @property
    def needs_refund(self) -> bool:
        """A charge exists (settled or pending) that the order's outcome no longer justifies.

        Not after COMPENSATION_FAILED: that order waits for an operator, not for retries.
        """
        kept = {
            OrderStatus.PAYMENT_PENDING,
            OrderStatus.PAYMENT_CHARGED,
            OrderStatus.CONFIRMED,
            OrderStatus.COMPENSATION_FAILED,
        }
        return bool(self.payment_id) and not self.refunded and self.status not in kept

    def confirm(self) -> None:
        self._move({OrderStatus.PAYMENT_CHARGED}, OrderStatus.CONFIRMED)
        self.events.append(OrderConfirmed(self.order_id))

    def step_failed(self, step: str, reason: str) -> None:
        """A step failed permanently: compensate what was done, or fail at once if nothing was."""
        self.failed_step, self.failure_reason = step, reason
        if self.reserved or self.payment_id:
            self._move(_ACTIVE, OrderStatus.COMPENSATING)
        else:
            self._move(_ACTIVE, OrderStatus.FAILED)
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
        self._require(OrderStatus.COMPENSATING)
        self.reserved = False

    def compensated(self) -> None:
        """Every compensation is done: end CANCELLED or FAILED."""
        self._require(OrderStatus.COMPENSATING)
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

    def _require(self, status: OrderStatus) -> None:
        if self.status is not status:
            wanted = status.value.lower().replace("_", " ")
            raise InvalidTransition(f"order {self.order_id} is not {wanted}")
