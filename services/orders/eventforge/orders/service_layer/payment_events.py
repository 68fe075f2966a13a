"""The payment provider's answers out of band move on the order that waits on that payment.

`payment.succeeded` confirms a PAYMENT_PENDING order (PAYMENT_CHARGED → CONFIRMED) unless its
amount differs from the order's total (then the order compensates, refunding it);
`payment.failed` compensates it and fails it with the provider's reason. Both are idempotent by
the order's state: an answer for an order that no longer waits changes nothing, except that a
success for an order that failed, timed out or was cancelled meanwhile gets its charge refunded
if the compensation has not already voided or refunded it — the order stays as it is.

An answer for a payment id that no order holds is logged and acknowledged, not dead-lettered:
the provider's webhooks report every charge of the account, not only the saga's, and a charge
whose id the saga failed to record (a crash) is found by the stalled-order recovery, which
charges again under the same idempotency key and gets that charge as it stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry import trace

from eventforge.orders.domain.commands import ConfirmPayment, RefusePayment
from eventforge.orders.domain.model import Order, OrderStatus
from eventforge.orders.service_layer.ports import PaymentGateway
from eventforge.orders.service_layer.saga import RetryPolicy, advance_saga, continued, locked
from eventforge.orders.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime.metrics import Metrics

log = logging.getLogger("eventforge.orders.payments")


def confirm_payment(
    *,
    command: ConfirmPayment,
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    metrics: Metrics | None = None,
) -> Order | None:
    """Confirm the order waiting on this payment; None when no order holds it."""

    def settle(order: Order) -> None:
        mismatch = _amount_mismatch(order, command)
        if mismatch:
            order.step_failed("charge_payment", mismatch)
        else:
            order.payment_confirmed()

    return _answered(command.payment_id, "payment.succeeded", settle, uow, gateway, retry, metrics)


def refuse_payment(
    *,
    command: RefusePayment,
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    metrics: Metrics | None = None,
) -> Order | None:
    """Fail the order waiting on this payment, with the provider's reason; None when no order
    holds it."""
    reason = command.reason or "refused by the payment provider"
    return _answered(
        command.payment_id,
        "payment.failed",
        lambda order: order.payment_refused(reason),
        uow,
        gateway,
        retry,
        metrics,
    )


def _answered(
    payment_id: str,
    answer: str,
    settle: Callable[[Order], None],
    uow: UnitOfWork,
    gateway: PaymentGateway,
    retry: RetryPolicy,
    metrics: Metrics | None,
) -> Order | None:
    """Apply the provider's answer to the order waiting on `payment_id`, then drive its saga."""
    with uow:
        order = uow.orders.with_payment(payment_id)
    if order is None:
        log.warning("%s for payment %s, which no order holds: ignored", answer, payment_id)
        return None
    order_id = order.order_id
    # The answer came in the webhook's own trace: the saga goes on in the order's, linked to it.
    delivery = trace.get_current_span()
    delivery.set_attribute("eventforge.order_id", order_id)
    context = delivery.get_span_context()
    links = [trace.Link(context)] if context.is_valid else []
    with continued(order, f"saga {answer}", links=links):
        with uow:
            order = locked(uow, order_id)
            if order.status is OrderStatus.PAYMENT_PENDING and order.payment_id == payment_id:
                settle(order)
                uow.orders.save(order)
                uow.commit()
            else:
                log.info(
                    "%s for payment %s of order %s, which is %s: nothing to settle",
                    answer,
                    payment_id,
                    order_id,
                    order.status.value,
                    extra={"order_id": order_id},
                )
        return advance_saga(
            order_id=order_id, uow=uow, gateway=gateway, retry=retry, metrics=metrics
        )


def _amount_mismatch(order: Order, command: ConfirmPayment) -> str:
    """Why the settled amount cannot pay for the order ("" when it can or is not given)."""
    if not command.currency:
        return ""
    paid, due = (command.amount_minor, command.currency), (order.total_minor, order.currency)
    if paid == due:
        return ""
    return f"payment of {paid[0]} {paid[1]} does not match the order total {due[0]} {due[1]}"
