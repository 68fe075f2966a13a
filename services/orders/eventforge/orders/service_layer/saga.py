"""The order saga: reserve inventory → charge payment → confirm, compensating in reverse.

A charge the provider answers "pending" leaves the order PAYMENT_PENDING until the provider's
payment.succeeded / payment.failed (`payment_events`) or its deadline (`recovery`) moves it on.

Each step runs in its own unit of work that locks the order row, re-reads its persisted state
and moves it on, so a redelivered event, a second worker or a restarted one continues from
where the order stands and never repeats a step (the charge and the refund also carry
idempotency keys derived from the order).

Every step run is timed into `eventforge.saga.step.duration`; a step that commits an order into
a terminal status counts it in `eventforge.saga.outcomes` and logs one line with the field
`saga_outcome` (CONFIRMED, FAILED, CANCELLED or COMPENSATION_FAILED, at ERROR): the cloud
stacks alarm on the COMPENSATION_FAILED ones.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from opentelemetry import trace

from eventforge.orders.domain.model import Order, OrderStatus
from eventforge.orders.service_layer.ports import (
    Charge,
    PaymentDeclined,
    PaymentGateway,
    PaymentUnavailable,
)
from eventforge.orders.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime import deferred
from eventforge.runtime.errors import NotFound
from eventforge.runtime.metrics import Metrics, process_metrics

log = logging.getLogger("eventforge.orders.saga")
tracer = trace.get_tracer("eventforge.orders.saga")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long the saga waits on the payment provider.

    Transient failures are retried with jittered exponential backoff before giving up; a charge
    left pending is awaited `pending_timeout` (PAYMENT_PENDING_TIMEOUT_SECONDS) before the order
    is compensated.
    """

    attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    pending_timeout: timedelta = timedelta(minutes=15)

    def call(self, operation: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except PaymentUnavailable as error:
                if attempt == self.attempts:
                    raise
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                log.info("transient failure (%s); retry %d in %.2fs", error, attempt, delay)
                self.sleep(random.uniform(delay / 2, delay))  # noqa: S311
        raise AssertionError("unreachable")  # pragma: no cover


def charge_key(order_id: str) -> str:
    return f"order-{order_id}-charge"


def refund_key(order_id: str) -> str:
    return f"order-{order_id}-refund"


def advance_saga(
    *,
    order_id: str,
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    metrics: Metrics | None = None,
) -> Order:
    """Drive an order as far as it can go now; returns it in its new state."""
    metrics = metrics or process_metrics()
    order = _reserve(order_id, uow, metrics)
    if order.status is OrderStatus.INVENTORY_RESERVED:
        order = _charge(order, uow, gateway, retry, metrics)
    # PAYMENT_PENDING ends here: the provider's event or the deadline moves the order on.
    if order.status is OrderStatus.PAYMENT_CHARGED:
        order = _confirm(order_id, uow, metrics)
    if order.status is OrderStatus.COMPENSATING or order.needs_refund:
        order = compensate(
            order_id=order_id, uow=uow, gateway=gateway, retry=retry, metrics=metrics
        )
    return order


def _settled(order: Order, before: OrderStatus, metrics: Metrics) -> None:
    """Count and log the terminal status a step has just committed the order into."""
    status = order.status
    if status is before or not status.terminal:
        return
    metrics.saga_outcome(status.value)
    why = {
        OrderStatus.CONFIRMED: "",
        OrderStatus.FAILED: f" at {order.failed_step}: {order.failure_reason}",
        OrderStatus.CANCELLED: f": {order.failure_reason}",
        OrderStatus.COMPENSATION_FAILED: ": a compensation failed for good; needs an operator",
    }[status]
    log.log(
        logging.ERROR if status is OrderStatus.COMPENSATION_FAILED else logging.INFO,
        "order %s %s%s",
        order.order_id,
        status.value,
        why,
        extra={"saga_outcome": status.value, "order_id": order.order_id},
    )


@contextmanager
def continued(order: Order, name: str, *, links: Sequence[trace.Link] = ()) -> Iterator[None]:
    """A span of saga work done later for `order`, under the request that placed it: its trace
    (or a trace linked to it, when long after) and its request id."""
    with deferred.resumed(
        tracer,
        name,
        order.cause,
        caused_at=order.created_at,
        now=datetime.now(UTC),
        attributes={
            "eventforge.order_id": order.order_id,
            "eventforge.order_status": order.status.value,
        },
        links=links,
    ):
        yield


def locked(uow: UnitOfWork, order_id: str) -> Order:
    """The order, locked until `uow` ends and tracked by it."""
    order = uow.orders.get(order_id, for_update=True)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return uow.track(order)


def _reserve(order_id: str, uow: UnitOfWork, metrics: Metrics) -> Order:
    with (
        metrics.saga_step("reserve_inventory"),
        uow,
        tracer.start_as_current_span("saga reserve_inventory") as span,
    ):
        order = locked(uow, order_id)
        span.set_attribute("eventforge.order_id", order_id)
        if order.status is not OrderStatus.PENDING:
            return order
        short = uow.catalog.reserve(order.order_id, order.lines)
        if short:
            order.step_failed("reserve_inventory", f"insufficient stock for {', '.join(short)}")
        else:
            order.inventory_reserved()
        uow.orders.save(order)
        uow.commit()
        _settled(order, OrderStatus.PENDING, metrics)
        return order


def _charge(
    order: Order, uow: UnitOfWork, gateway: PaymentGateway, retry: RetryPolicy, metrics: Metrics
) -> Order:
    with metrics.saga_step("charge_payment"):
        return _charge_step(order, uow, gateway, retry, metrics)


def _charge_step(
    order: Order, uow: UnitOfWork, gateway: PaymentGateway, retry: RetryPolicy, metrics: Metrics
) -> Order:
    charge: Charge | None = None
    failure = ""
    with tracer.start_as_current_span("saga charge_payment") as span:
        span.set_attribute("eventforge.order_id", order.order_id)
        try:
            charge = retry.call(
                lambda: gateway.charge(
                    idempotency_key=charge_key(order.order_id),
                    order_id=order.order_id,
                    amount_minor=order.total_minor,
                    currency=order.currency,
                    token=order.payment_token,
                )
            )
            span.set_attribute("eventforge.payment_pending", charge.pending)
        except PaymentDeclined as error:
            failure = f"payment declined: {error}"
        except PaymentUnavailable as error:
            failure = f"payment failed after {retry.attempts} attempts: {error}"
        if failure:
            span.set_status(trace.StatusCode.ERROR, failure)
    with uow:
        order = locked(uow, order.order_id)
        before = order.status
        if charge is not None and charge.pending:
            due_at = datetime.now(UTC) + retry.pending_timeout
            order.payment_pending(charge.payment_id, due_at=due_at)
        elif charge is not None:
            order.payment_charged(charge.payment_id)
        elif order.status is OrderStatus.INVENTORY_RESERVED:
            order.step_failed("charge_payment", failure)
        uow.orders.save(order)
        uow.commit()
        _settled(order, before, metrics)
        if order.status is OrderStatus.PAYMENT_PENDING:
            log.info(
                "order %s waits until %s for payment %s",
                order.order_id,
                order.payment_due_at,
                order.payment_id,
                extra={"order_id": order.order_id},
            )
        return order


def _confirm(order_id: str, uow: UnitOfWork, metrics: Metrics) -> Order:
    with metrics.saga_step("confirm"), uow, tracer.start_as_current_span("saga confirm"):
        order = locked(uow, order_id)
        if order.status is OrderStatus.PAYMENT_CHARGED:
            order.confirm()
            uow.orders.save(order)
            uow.commit()
            _settled(order, OrderStatus.PAYMENT_CHARGED, metrics)
        return order


def compensate(
    *,
    order_id: str,
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    metrics: Metrics | None = None,
) -> Order:
    """Undo what was done, in reverse (refund, then release); holds the order's lock throughout."""
    metrics = metrics or process_metrics()
    with metrics.saga_step("compensate"):
        return _compensate(order_id, uow, gateway, retry, metrics)


def _compensate(
    order_id: str, uow: UnitOfWork, gateway: PaymentGateway, retry: RetryPolicy, metrics: Metrics
) -> Order:
    with uow, tracer.start_as_current_span("saga compensate") as span:
        order = locked(uow, order_id)
        before = order.status
        span.set_attribute("eventforge.order_id", order_id)
        if order.status is OrderStatus.COMPENSATING and order.reserved and not order.payment_id:
            # The charge step may have run without its result being recorded (a crash).
            found = gateway.find_charge(charge_key(order_id))
            if found:
                order.payment_charged(found)
        if order.needs_refund:
            try:
                retry.call(
                    lambda: gateway.refund(
                        idempotency_key=refund_key(order_id), payment_id=order.payment_id
                    )
                )
                order.refund_done()
            except (PaymentDeclined, PaymentUnavailable) as error:
                span.set_status(trace.StatusCode.ERROR, str(error))
                log.error("refund of order %s failed: %s", order_id, error)
                order.compensation_failed("refund_payment", str(error))
                uow.orders.save(order)
                uow.commit()
                _settled(order, before, metrics)
                return order
        if order.status is OrderStatus.COMPENSATING:
            if order.reserved:
                uow.catalog.release(order_id)
                order.release_done()
            order.compensated()
        uow.orders.save(order)
        uow.commit()
        _settled(order, before, metrics)
        return order
