"""The order-recovery work: fail orders whose payment never came, resume sagas that stalled.

`recover_stalled` is the body of the `order-recovery` job, whose tick comes every minute.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from eventforge.orders.service_layer.ports import PaymentGateway
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
    """Compensate the PAYMENT_PENDING orders past their deadline: the pending charge is voided
    (or refunded, had it settled), the stock released, the order FAILED ("payment confirmation
    timed out"); returns how many."""
    now = now or datetime.now(UTC)
    with uow:
        due = uow.orders.payments_due(now=now, limit=limit)
    expired = 0
    for order_id in due:
        with uow:
            order = uow.orders.get(order_id)
        if order is None:
            continue
        with continued(order, "saga payment_timeout"):
            with uow:
                order = locked(uow, order_id)
                if not order.payment_overdue(now):
                    continue  # its payment's answer came meanwhile
                order.payment_timed_out(now)
                uow.orders.save(order)
                uow.commit()
            log.warning(
                "order %s: payment %s not confirmed by its deadline; compensating",
                order_id,
                order.payment_id,
                extra={"order_id": order_id},
            )
            advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=retry, metrics=metrics)
            expired += 1
    return expired
