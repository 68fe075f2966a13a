"""Payments confirmed out of band, with fakes: waiting, confirmed, refused, timed out, late."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventforge.orders.domain.commands import CancelOrder, ConfirmPayment, RefusePayment
from eventforge.orders.domain.model import PAYMENT_TIMED_OUT, Order, OrderStatus
from eventforge.orders.service_layer import handlers
from eventforge.orders.service_layer.payment_events import confirm_payment, refuse_payment
from eventforge.orders.service_layer.recovery import expire_pending_payments, recover_stalled
from eventforge.orders.service_layer.saga import RetryPolicy, advance_saga
from eventforge.runtime.errors import FailedPrecondition
from tests.orders.fakes import Crash, FakeGateway, FakeUnitOfWork
from tests.orders.test_saga import BOOK, placed

TIMEOUT = timedelta(minutes=15)
RETRY = RetryPolicy(attempts=3, sleep=lambda _: None, pending_timeout=TIMEOUT)
LATER = datetime.now(UTC) + 2 * TIMEOUT


def waiting() -> tuple[FakeUnitOfWork, FakeGateway, Order]:
    uow, gateway, order_id = placed("tok_pending")
    order = advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY)
    assert order.status is OrderStatus.PAYMENT_PENDING
    return uow, gateway, order


def succeeded(
    uow: FakeUnitOfWork, gateway: FakeGateway, payment_id: str, amount: int = 5000
) -> Order | None:
    command = ConfirmPayment(payment_id, "payments", amount, "USD")
    return confirm_payment(command=command, uow=uow, gateway=gateway, retry=RETRY)


def failed(uow: FakeUnitOfWork, gateway: FakeGateway, payment_id: str) -> Order | None:
    command = RefusePayment(payment_id, "payments", "card declined")
    return refuse_payment(command=command, uow=uow, gateway=gateway, retry=RETRY)


def expire(uow: FakeUnitOfWork, gateway: FakeGateway, now: datetime = LATER) -> int:
    return expire_pending_payments(uow=uow, gateway=gateway, retry=RETRY, now=now)


def test_a_pending_charge_waits_with_a_deadline_and_without_charging_again() -> None:
    before = datetime.now(UTC)
    uow, gateway, order = waiting()
    assert order.payment_due_at is not None
    assert before + TIMEOUT <= order.payment_due_at <= datetime.now(UTC) + TIMEOUT
    assert uow.catalog.stock[BOOK] == 98
    again = advance_saga(order_id=order.order_id, uow=uow, gateway=gateway, retry=RETRY)
    assert again.status is OrderStatus.PAYMENT_PENDING  # a redelivered order.placed
    assert gateway.attempts == {f"order-{order.order_id}-charge": 1}
    # Waiting is not stalled: the recovery leaves it alone until its deadline.
    assert (
        recover_stalled(uow=uow, gateway=gateway, retry=RETRY, idle_for=timedelta(seconds=-1)) == 0
    )
    assert uow.types() == ["OrderPlaced"]


def test_payment_succeeded_confirms_once() -> None:
    uow, gateway, order = waiting()
    gateway.settle(order.payment_id)
    confirmed = succeeded(uow, gateway, order.payment_id)
    assert confirmed is not None
    assert confirmed.status is OrderStatus.CONFIRMED
    again = succeeded(uow, gateway, order.payment_id)  # the provider's retry of its webhook
    assert again is not None
    assert again.status is OrderStatus.CONFIRMED
    assert uow.types() == ["OrderPlaced", "OrderConfirmed"]
    assert gateway.net_charges(order.order_id) == 1
    assert uow.catalog.stock[BOOK] == 98
    assert expire(uow, gateway) == 0


def test_payment_failed_releases_and_fails_with_the_providers_reason() -> None:
    uow, gateway, order = waiting()
    gateway.settle(order.payment_id, succeeded=False, reason="card declined")
    refused = failed(uow, gateway, order.payment_id)
    assert refused is not None
    assert refused.status is OrderStatus.FAILED
    assert refused.failure_reason == "payment failed: card declined"
    assert refused.failed_step == "charge_payment"
    assert uow.catalog.stock[BOOK] == 100
    assert gateway.refunds == {}  # nothing was taken, nothing to give back
    failed(uow, gateway, order.payment_id)
    assert uow.types() == ["OrderPlaced", "OrderFailed"]


def test_an_overdue_payment_is_voided_released_and_failed() -> None:
    uow, gateway, order = waiting()
    assert expire(uow, gateway, now=datetime.now(UTC)) == 0  # not due yet
    assert expire(uow, gateway) == 1
    expired = uow.orders.rows[order.order_id]
    assert expired.status is OrderStatus.FAILED
    assert expired.failure_reason == PAYMENT_TIMED_OUT
    assert uow.catalog.stock[BOOK] == 100
    assert order.payment_id in gateway.refunds
    assert order.payment_id not in gateway.pending
    assert gateway.net_charges(order.order_id) == 0
    assert expire(uow, gateway) == 0
    assert uow.types() == ["OrderPlaced", "OrderFailed"]


def test_a_charge_settled_without_its_webhook_is_confirmed_at_the_deadline() -> None:
    uow, gateway, order = waiting()
    gateway.settle(order.payment_id)  # the provider settled it; its webhook never came
    assert expire(uow, gateway) == 1
    confirmed = uow.orders.rows[order.order_id]
    assert confirmed.status is OrderStatus.CONFIRMED
    assert gateway.net_charges(order.order_id) == 1
    assert uow.catalog.stock[BOOK] == 98
    late = succeeded(uow, gateway, order.payment_id)  # the webhook, after all
    assert late is not None
    assert late.status is OrderStatus.CONFIRMED
    assert uow.types() == ["OrderPlaced", "OrderConfirmed"]


def test_a_charge_refused_without_its_webhook_fails_with_the_providers_reason() -> None:
    uow, gateway, order = waiting()
    gateway.settle(order.payment_id, succeeded=False, reason="insufficient funds")
    assert expire(uow, gateway) == 1
    refused = uow.orders.rows[order.order_id]
    assert refused.status is OrderStatus.FAILED
    assert refused.failure_reason == "payment failed: insufficient funds"
    assert gateway.net_charges(order.order_id) == 0
    assert uow.catalog.stock[BOOK] == 100


def test_an_overdue_payment_waits_while_the_provider_cannot_say_how_it_stands() -> None:
    uow, gateway, order = waiting()
    gateway.unavailable = True
    assert expire(uow, gateway) == 0
    assert uow.orders.rows[order.order_id].status is OrderStatus.PAYMENT_PENDING
    assert order.payment_id in gateway.pending  # nothing voided while the answer is unknown
    gateway.unavailable = False
    assert expire(uow, gateway) == 1
    assert uow.orders.rows[order.order_id].failure_reason == PAYMENT_TIMED_OUT


def test_recover_stalled_also_expires_overdue_payments() -> None:
    uow, gateway, order = waiting()
    moved = recover_stalled(
        uow=uow, gateway=gateway, retry=RETRY, idle_for=timedelta(minutes=2), now=LATER
    )
    assert moved == 1
    assert uow.orders.rows[order.order_id].status is OrderStatus.FAILED


@pytest.mark.parametrize("end", ["timeout", "cancel"])
def test_a_success_after_the_order_ended_leaves_it_ended_and_refunded(end: str) -> None:
    uow, gateway, order = waiting()
    if end == "timeout":
        expire(uow, gateway)  # still pending at the provider: voided
    else:
        gateway.settle(order.payment_id)  # the provider settled; its webhook is late
        handlers.cancel_order(
            command=CancelOrder(order.order_id, "too slow"), uow=uow, gateway=gateway, retry=RETRY
        )
    late = succeeded(uow, gateway, order.payment_id)
    assert late is not None
    assert late.status is (OrderStatus.FAILED if end == "timeout" else OrderStatus.CANCELLED)
    assert gateway.net_charges(order.order_id) == 0
    assert uow.catalog.stock[BOOK] == 100
    assert "OrderConfirmed" not in uow.types()


def test_a_success_during_compensation_finishes_it_and_refunds_once() -> None:
    uow, gateway, order = waiting()
    uow.crash_at = {5}  # 4 timed out; the compensation refunded, then its commit crashed
    with pytest.raises(Crash):
        expire(uow, gateway)
    assert uow.orders.rows[order.order_id].status is OrderStatus.COMPENSATING
    late = succeeded(uow, gateway, order.payment_id)
    assert late is not None
    assert late.status is OrderStatus.FAILED
    assert late.failure_reason == PAYMENT_TIMED_OUT
    assert gateway.net_charges(order.order_id) == 0
    assert uow.catalog.stock[BOOK] == 100
    assert uow.types() == ["OrderPlaced", "OrderFailed"]


def test_an_amount_that_does_not_match_is_refunded_and_fails() -> None:
    uow, gateway, order = waiting()
    gateway.settle(order.payment_id)
    short = succeeded(uow, gateway, order.payment_id, amount=4999)
    assert short is not None
    assert short.status is OrderStatus.FAILED
    assert "does not match the order total 5000 USD" in short.failure_reason
    assert gateway.net_charges(order.order_id) == 0
    assert uow.catalog.stock[BOOK] == 100


def test_an_unknown_payment_changes_nothing() -> None:
    uow, gateway, order = waiting()
    assert succeeded(uow, gateway, "pay_of_another_system") is None
    assert failed(uow, gateway, "pay_of_another_system") is None
    assert uow.orders.rows[order.order_id].status is OrderStatus.PAYMENT_PENDING
    assert succeeded(uow, gateway, "") is None


def test_a_pending_charge_whose_answer_was_not_recorded_waits_after_recovery() -> None:
    uow, gateway, order_id = placed("tok_pending")
    uow.crash_at = {3}  # the provider took the charge; recording it crashed
    with pytest.raises(Crash):
        advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY)
    recover_stalled(uow=uow, gateway=gateway, retry=RETRY, idle_for=timedelta(seconds=-1))
    order = uow.orders.rows[order_id]
    assert order.status is OrderStatus.PAYMENT_PENDING
    assert order.payment_id == f"pay-{order_id}"
    assert len(gateway.charges) == 1


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.sampled_from(
            ["settle", "refuse", "succeeded", "failed", "expire", "cancel", "redeliver", "crash"]
        ),
        max_size=8,
    )
)
def test_any_interleaving_of_answers_deadline_and_cancel_ends_consistently(
    steps: list[str],
) -> None:
    uow, gateway, order = waiting()
    payment_id, order_id = order.payment_id, order.order_id
    for step in steps:
        with contextlib.suppress(Crash, FailedPrecondition):
            if step == "crash":
                uow.crash_next = True
            elif step in ("settle", "refuse") and payment_id in gateway.pending:
                gateway.settle(payment_id, succeeded=step == "settle", reason="card declined")
            elif step == "succeeded" and payment_id not in gateway.pending | set(gateway.refused):
                succeeded(uow, gateway, payment_id)
            elif step == "failed" and payment_id in gateway.refused:
                failed(uow, gateway, payment_id)
            elif step == "expire":
                expire(uow, gateway)
            elif step == "cancel":
                handlers.cancel_order(
                    command=CancelOrder(order_id, "cancel"), uow=uow, gateway=gateway, retry=RETRY
                )
            elif step == "redeliver":
                advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY)
    uow.crash_next = False
    expire(uow, gateway)
    final = advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY)
    assert final.status.terminal, final
    if final.status is OrderStatus.CONFIRMED:
        assert gateway.net_charges(order_id) == 1
        assert uow.catalog.stock[BOOK] == 98
    else:
        assert gateway.net_charges(order_id) == 0
        assert uow.catalog.stock[BOOK] == 100
    assert len([t for t in uow.types() if t != "OrderPlaced"]) == 1, uow.types()
