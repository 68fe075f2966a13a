"""The order-recovery work: fail orders whose payment never came, resume sagas that stalled.

`recover_stalled` is the body of the `order-recovery` job, whose tick comes every minute.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from eventforge.orders.domain.model import Order
from eventforge.orders.service_layer.ports import (
    ChargeState,
    ChargeStatus,
    PaymentGateway,
    PaymentUnavailable,
)
from eventforge.orders.service_layer.saga import RetryPolicy, advance_saga, continued, locked
from eventforge.orders.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime.metrics import Metrics

log = logging.getLogger("eventforge.orders.recovery")


def recover_stalled(
    *,
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    idle_for: timedelta,
    limit: int = 50,
    metrics: Metrics | None = None,
    now: datetime | None = None,
) -> int:
    """Fail the orders whose payment is overdue (`expire_pending_payments`), then advance the
    orders that stopped moving (a lost or dead-lettered event); returns how many it moved."""
    now = now or datetime.now(UTC)
    expired = expire_pending_payments(
        uow=uow, gateway=gateway, retry=retry, now=now, limit=limit, metrics=metrics
    )
    with uow:
        stalled = uow.orders.stalled(older_than=now - idle_for, limit=limit)
    for order_id in stalled:
        with uow:
            order = uow.orders.get(order_id)
        if order is None:
            continue
        with continued(order, "saga resume"):
            log.warning("resuming stalled order %s", order_id)
            advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=retry, metrics=metrics)
    return expired + len(stalled)


def expire_pending_payments(
    *,
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    now: datetime | None = None,
    limit: int = 50,
    metrics: Metrics | None = None,
) -> int:
    """Settle the PAYMENT_PENDING orders past their deadline by what the provider says of
    their charge now: settled (its webhook was lost) → confirmed; refused → FAILED with the
    provider's reason; still pending → the charge is voided, the stock released, the order
    FAILED ("payment confirmation timed out"). An order whose provider cannot be asked waits
    for the next run. Returns how many orders it settled."""
    now = now or datetime.now(UTC)
    with uow:
        due = uow.orders.payments_due(now=now, limit=limit)
    settled = 0
    for order_id in due:
        with uow:
            order = uow.orders.get(order_id)
        if order is None:
            continue
        with continued(order, "saga payment_timeout"):
            try:
                # Asked outside the order's lock: it is a call to another system.
                charge = gateway.charge_status(order.payment_id)
            except PaymentUnavailable as error:
                log.warning(
                    "order %s: payment %s is overdue, and the provider cannot say how it "
                    "stands (%s): left for the next run",
                    order_id,
                    order.payment_id,
                    error,
                    extra={"order_id": order_id},
                )
                continue
            with uow:
                order = locked(uow, order_id)
                if not order.payment_overdue(now):
                    continue  # its payment's answer came meanwhile
                _settle_overdue(order, charge, now)
                uow.orders.save(order)
                uow.commit()
            advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=retry, metrics=metrics)
            settled += 1
    return settled


def _settle_overdue(order: Order, charge: ChargeStatus, now: datetime) -> None:
    """Move an overdue order on by its charge's state at the provider, and say so."""
    extra = {"order_id": order.order_id}
    if charge.state is ChargeState.SETTLED:
        log.warning(
            "order %s: payment %s settled at the provider without its webhook; confirming",
            order.order_id,
            order.payment_id,
            extra=extra,
        )
        order.payment_confirmed()
    elif charge.state is ChargeState.FAILED:
        order.payment_refused(charge.reason or "refused by the payment provider")
    else:
        log.warning(
            "order %s: payment %s not confirmed by its deadline; compensating",
            order.order_id,
            order.payment_id,
            extra=extra,
        )
        order.payment_timed_out(now)
