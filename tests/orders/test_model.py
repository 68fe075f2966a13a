"""The order aggregate's transitions, allowed and refused."""

from __future__ import annotations

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
