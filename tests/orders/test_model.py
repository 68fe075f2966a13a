"""The order aggregate's transitions, allowed and refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventforge.orders.domain import model
from eventforge.orders.domain.model import InvalidTransition, Order, OrderLine, OrderStatus


def new_order() -> Order:
    return Order.place(
        order_id="o-1",
        customer_id="c-1",
        customer_email="c@example.com",
        currency="USD",
        lines=[OrderLine("SKU-A", 2, 500), OrderLine("SKU-B", 1, 250)],
        payment_token="tok_success",
    )


def test_placing_records_order_placed_and_totals_in_minor_units() -> None:
    order = new_order()
    assert order.status is OrderStatus.PENDING
    assert order.total_minor == 1250
    assert order.events == [model.OrderPlaced("o-1")]


def test_happy_path_to_confirmed() -> None:
    order = new_order()
    order.inventory_reserved()
    order.payment_charged("pay-1")
    order.confirm()
    assert order.status is OrderStatus.CONFIRMED
    assert order.events[-1] == model.OrderConfirmed("o-1")
    assert order.status.terminal


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (lambda o: o.payment_charged("p"), "PENDING → PAYMENT_CHARGED"),
        (lambda o: o.confirm(), "PENDING → CONFIRMED"),
        (lambda o: o.compensated(), "not compensating"),
        (lambda o: o.release_done(), "not compensating"),
        (lambda o: o.refund_done(), "no charge"),
    ],
)
def test_out_of_order_steps_are_refused(step: object, expected: str) -> None:
    order = new_order()
    assert callable(step)
    with pytest.raises(InvalidTransition, match=expected):
        step(order)


def test_failure_before_anything_was_done_fails_at_once() -> None:
    order = new_order()
    order.step_failed("reserve_inventory", "insufficient stock for SKU-A")
    assert order.status is OrderStatus.FAILED
    assert order.events[-1] == model.OrderFailed(
        "o-1", "reserve_inventory", "insufficient stock for SKU-A"
    )


def status(order: Order) -> OrderStatus:
    """The status now (a call keeps mypy from assuming it cannot change)."""
    return order.status


def test_failure_after_reserving_compensates_then_fails() -> None:
    order = new_order()
    order.inventory_reserved()
    order.step_failed("charge_payment", "card declined")
    assert status(order) is OrderStatus.COMPENSATING
    with pytest.raises(InvalidTransition, match="still has steps"):
        order.compensated()
    order.release_done()
    order.compensated()
    assert status(order) is OrderStatus.FAILED
    assert order.events[-1] == model.OrderFailed("o-1", "charge_payment", "card declined")


def test_cancel_pending_is_immediate_and_idempotent() -> None:
    order = new_order()
    assert order.request_cancel("changed my mind")
    assert order.status is OrderStatus.CANCELLED
    assert not order.request_cancel("again")
    assert order.events[-1] == model.OrderCancelled("o-1", "changed my mind")


def test_cancel_after_charge_needs_refund_and_release() -> None:
    order = new_order()
    order.inventory_reserved()
    order.payment_charged("pay-1")
    order.request_cancel("too slow")
    assert status(order) is OrderStatus.COMPENSATING
    assert order.needs_refund
    order.refund_done()
    order.release_done()
    order.compensated()
    assert status(order) is OrderStatus.CANCELLED


def test_confirmed_orders_cannot_be_cancelled() -> None:
    order = new_order()
    order.inventory_reserved()
    order.payment_charged("pay-1")
    order.confirm()
    with pytest.raises(InvalidTransition):
        order.request_cancel("late")


def test_a_charge_landing_after_cancel_is_kept_for_refund() -> None:
    order = new_order()
    order.inventory_reserved()
    order.request_cancel("cancel")
    order.release_done()
    order.compensated()
    order.payment_charged("pay-late")
    assert order.status is OrderStatus.CANCELLED
    assert order.needs_refund


def test_compensation_failure_is_terminal_and_alarmed() -> None:
    order = new_order()
    order.inventory_reserved()
    order.payment_charged("pay-1")
    order.request_cancel("cancel")
    order.compensation_failed("refund_payment", "refund refused")
    assert order.status is OrderStatus.COMPENSATION_FAILED
    assert order.events[-1] == model.CompensationFailed("o-1", "refund_payment", "refund refused")


DUE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def waiting_order() -> Order:
    order = new_order()
    order.inventory_reserved()
    order.payment_pending("pay-1", due_at=DUE)
    return order


def test_a_pending_charge_waits_until_its_deadline() -> None:
    order = waiting_order()
    assert order.status is OrderStatus.PAYMENT_PENDING
    assert (order.payment_id, order.payment_due_at) == ("pay-1", DUE)
    assert order.status.waiting
    assert not order.status.terminal
    assert not order.needs_refund  # waiting, not abandoned
    assert not order.payment_overdue(DUE - timedelta(seconds=1))
    assert order.payment_overdue(DUE)


def test_a_confirmed_pending_payment_is_charged_then_confirmed() -> None:
    order = waiting_order()
    order.payment_confirmed()
    assert status(order) is OrderStatus.PAYMENT_CHARGED
    assert order.payment_due_at is None
    order.confirm()
    assert order.events[-1] == model.OrderConfirmed("o-1")


def test_a_refused_pending_payment_compensates_with_nothing_to_refund() -> None:
    order = waiting_order()
    order.payment_refused("card declined")
    assert status(order) is OrderStatus.COMPENSATING
    assert (order.payment_id, order.failure_reason) == ("", "payment failed: card declined")
    assert not order.needs_refund
    order.release_done()
    order.compensated()
    assert order.events[-1] == model.OrderFailed(
        "o-1", "charge_payment", "payment failed: card declined"
    )


def test_an_overdue_pending_payment_times_out_and_voids_the_charge() -> None:
    order = waiting_order()
    with pytest.raises(InvalidTransition, match="not due yet"):
        order.payment_timed_out(DUE - timedelta(seconds=1))
    order.payment_timed_out(DUE)
    assert status(order) is OrderStatus.COMPENSATING
    assert order.failure_reason == model.PAYMENT_TIMED_OUT
    assert order.needs_refund  # the pending charge is voided
    assert order.payment_due_at is None


def test_cancelling_a_waiting_order_compensates() -> None:
    order = waiting_order()
    assert order.request_cancel("too slow")
    assert status(order) is OrderStatus.COMPENSATING
    assert order.needs_refund
    assert order.reserved


@pytest.mark.parametrize(
    "answer",
    [
        lambda o: o.payment_confirmed(),
        lambda o: o.payment_refused("late"),
        lambda o: o.payment_timed_out(DUE),
    ],
)
def test_only_a_waiting_order_takes_the_providers_answer(answer: object) -> None:
    order = new_order()
    order.inventory_reserved()
    order.payment_charged("pay-1")
    assert callable(answer)
    with pytest.raises(InvalidTransition):
        answer(order)


def test_a_pending_charge_answered_after_cancel_is_kept_to_be_voided() -> None:
    order = new_order()
    order.inventory_reserved()
    order.request_cancel("cancel")
    order.payment_pending("pay-late", due_at=DUE)
    assert order.status is OrderStatus.COMPENSATING
    assert order.needs_refund
    assert order.payment_due_at is None
