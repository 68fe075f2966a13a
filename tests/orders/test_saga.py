"""The order saga with fakes: every outcome, a failure at every step, crashes and redelivery."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventforge.orders.domain.commands import CancelOrder, RequestedLine
from eventforge.orders.domain.model import OrderStatus
from eventforge.orders.service_layer import handlers
from eventforge.orders.service_layer.ports import Charge
from eventforge.orders.service_layer.recovery import recover_stalled
from eventforge.orders.service_layer.saga import RetryPolicy, advance_saga, compensate
from eventforge.runtime import deferred
from eventforge.runtime.context import current_request_id, request_context
from eventforge.runtime.errors import FailedPrecondition
from tests.orders.fakes import Crash, FakeCatalog, FakeGateway, FakeUnitOfWork, place_order
from tests.orders.test_handlers import command

RETRY = RetryPolicy(attempts=3, sleep=lambda _: None)
BOOK = "SKU-BOOK-001"


def placed(token: str = "tok_success", stock: int = 100) -> tuple[FakeUnitOfWork, FakeGateway, str]:
    uow = FakeUnitOfWork(FakeCatalog({BOOK: stock, "SKU-MUG-001": 100}))
    order = place_order(command=command(payment_token=token), uow=uow)
    return uow, FakeGateway(), order.order_id


def run(uow: FakeUnitOfWork, gateway: FakeGateway, order_id: str) -> OrderStatus:
    return advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY).status


def test_happy_path_reserves_charges_once_and_confirms() -> None:
    uow, gateway, order_id = placed()
    assert run(uow, gateway, order_id) is OrderStatus.CONFIRMED
    assert uow.catalog.stock[BOOK] == 98
    assert gateway.net_charges(order_id) == 1
    assert uow.types() == ["OrderPlaced", "OrderConfirmed"]
    assert run(uow, gateway, order_id) is OrderStatus.CONFIRMED  # redelivery: nothing more
    assert gateway.net_charges(order_id) == 1
    assert uow.types() == ["OrderPlaced", "OrderConfirmed"]


def test_reserve_failure_fails_without_compensation() -> None:
    uow, gateway, order_id = placed(stock=1)
    assert run(uow, gateway, order_id) is OrderStatus.FAILED
    order = uow.orders.rows[order_id]
    assert order.failed_step == "reserve_inventory"
    assert "insufficient stock" in order.failure_reason
    assert gateway.charges == {}
    assert uow.catalog.stock[BOOK] == 1
    assert uow.types() == ["OrderPlaced", "OrderFailed"]


@pytest.mark.parametrize(
    ("token", "reason"), [("tok_decline", "declined"), ("tok_timeout", "after 3 attempts")]
)
def test_charge_failure_releases_the_reservation(token: str, reason: str) -> None:
    uow, gateway, order_id = placed(token)
    assert run(uow, gateway, order_id) is OrderStatus.FAILED
    order = uow.orders.rows[order_id]
    assert order.failed_step == "charge_payment"
    assert reason in order.failure_reason
    assert uow.catalog.stock[BOOK] == 100
    assert not order.reserved
    assert gateway.net_charges(order_id) == 0
    assert uow.types() == ["OrderPlaced", "OrderFailed"]


def test_transient_failures_are_retried_before_compensating() -> None:
    uow, gateway, order_id = placed("tok_transient_2")
    assert run(uow, gateway, order_id) is OrderStatus.CONFIRMED
    assert gateway.attempts == {f"order-{order_id}-charge": 3}


@pytest.mark.parametrize("crash_at", [2, 3, 4])
def test_a_crash_at_any_step_resumes_without_repeating(crash_at: int) -> None:
    uow, gateway, order_id = placed()
    uow.crash_at = {crash_at}  # commit 1 placed the order; 2 reserve, 3 charge, 4 confirm
    with pytest.raises(Crash):
        run(uow, gateway, order_id)
    assert run(uow, gateway, order_id) is OrderStatus.CONFIRMED
    assert gateway.net_charges(order_id) == 1
    assert uow.catalog.stock[BOOK] == 98
    assert uow.types() == ["OrderPlaced", "OrderConfirmed"]


def test_cancel_after_charge_refunds_then_releases() -> None:
    uow, gateway, order_id = placed()
    uow.crash_at = {4}  # stop the saga right before confirming
    with pytest.raises(Crash):
        run(uow, gateway, order_id)
    assert uow.orders.rows[order_id].status is OrderStatus.PAYMENT_CHARGED
    order = handlers.cancel_order(
        command=CancelOrder(order_id, "too slow"), uow=uow, gateway=gateway, retry=RETRY
    )
    assert order.status is OrderStatus.CANCELLED
    assert gateway.net_charges(order_id) == 0
    assert uow.catalog.stock[BOOK] == 100
    assert run(uow, gateway, order_id) is OrderStatus.CANCELLED
    assert uow.types() == ["OrderPlaced", "OrderCancelled"]


def test_a_failing_refund_ends_in_compensation_failed() -> None:
    uow, gateway, order_id = placed("tok_refund_fails")
    uow.crash_at = {4}
    with pytest.raises(Crash):
        run(uow, gateway, order_id)
    order = handlers.cancel_order(
        command=CancelOrder(order_id, "cancel"), uow=uow, gateway=gateway, retry=RETRY
    )
    assert order.status is OrderStatus.COMPENSATION_FAILED
    assert uow.types() == ["OrderPlaced", "OrderCompensationFailed"]
    again = handlers.cancel_order(
        command=CancelOrder(order_id, "again"), uow=uow, gateway=gateway, retry=RETRY
    )
    assert again.status is OrderStatus.COMPENSATION_FAILED
    assert uow.types() == ["OrderPlaced", "OrderCompensationFailed"]


def test_a_charge_that_lands_after_cancel_is_refunded() -> None:
    uow, gateway, order_id = placed()
    uow.crash_at = {3}  # the charge happened, recording it crashed
    with pytest.raises(Crash):
        run(uow, gateway, order_id)
    assert gateway.net_charges(order_id) == 1
    cancelled = handlers.cancel_order(
        command=CancelOrder(order_id, "cancel"), uow=uow, gateway=gateway, retry=RETRY
    )
    assert cancelled.status is OrderStatus.CANCELLED
    assert run(uow, gateway, order_id) is OrderStatus.CANCELLED  # redelivery finds the charge
    assert gateway.net_charges(order_id) == 0
    assert uow.types() == ["OrderPlaced", "OrderCancelled"]


@settings(max_examples=60, deadline=None)
@given(
    token=st.sampled_from(
        ["tok_success", "tok_decline", "tok_timeout", "tok_transient_1", "tok_refund_fails"]
    ),
    crashes=st.sets(st.integers(min_value=2, max_value=8), max_size=3),
    deliveries=st.integers(min_value=1, max_value=4),
    cancel_after=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
)
def test_any_interleaving_charges_at_most_once_and_releases_unless_confirmed(
    token: str, crashes: set[int], deliveries: int, cancel_after: int | None
) -> None:
    uow, gateway, order_id = placed(token)
    uow.crash_at = crashes
    for delivery in range(deliveries + 3):  # extra deliveries stand for redelivery after crashes
        if cancel_after == delivery:
            with contextlib.suppress(Crash, FailedPrecondition):
                handlers.cancel_order(
                    command=CancelOrder(order_id, "cancel"), uow=uow, gateway=gateway, retry=RETRY
                )
        try:
            run(uow, gateway, order_id)
        except Crash:
            continue
    uow.crash_at = set()
    order = advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY)
    if order.status is OrderStatus.COMPENSATING:
        order = compensate(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY)
    assert order.status.terminal
    assert gateway.net_charges(order_id) in (0, 1)
    assert len(gateway.charges) <= 1
    if order.status is OrderStatus.CONFIRMED:
        assert gateway.net_charges(order_id) == 1
        assert uow.catalog.stock[BOOK] == 98
    elif order.status is not OrderStatus.COMPENSATION_FAILED:
        assert gateway.net_charges(order_id) == 0
        assert uow.catalog.stock[BOOK] == 100
    terminal_events = [t for t in uow.types() if t != "OrderPlaced"]
    assert len(terminal_events) == 1, uow.types()


@settings(max_examples=40, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=100),
    key=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128
    ),
    repeats=st.integers(min_value=1, max_value=3),
)
def test_any_valid_request_makes_exactly_one_order_and_one_event(
    quantity: int, key: str, repeats: int
) -> None:
    uow = FakeUnitOfWork()
    cmd = command(idempotency_key=key, lines=(RequestedLine(BOOK, quantity, 2500, "USD"),))
    ids = {place_order(command=cmd, uow=uow).order_id for _ in range(repeats)}
    assert len(ids) == 1
    assert len(uow.orders.rows) == 1
    assert uow.types() == ["OrderPlaced"]


class _RecordsRequestIds(FakeGateway):
    """A gateway that remembers which request id was current at each charge."""

    def __init__(self) -> None:
        super().__init__()
        self.request_ids: list[str | None] = []

    def charge(
        self, *, idempotency_key: str, order_id: str, amount_minor: int, currency: str, token: str
    ) -> Charge:
        self.request_ids.append(current_request_id())
        return super().charge(
            idempotency_key=idempotency_key,
            order_id=order_id,
            amount_minor=amount_minor,
            currency=currency,
            token=token,
        )


def test_a_stalled_order_resumes_under_the_request_that_placed_it() -> None:
    uow = FakeUnitOfWork(FakeCatalog({BOOK: 100, "SKU-MUG-001": 100}))
    with request_context("req-placed"):
        order = place_order(command=command(), uow=uow)
    [stored] = uow.orders.rows.values()
    assert deferred.request_id_of(stored.cause) == "req-placed"
    gateway = _RecordsRequestIds()
    resumed = recover_stalled(uow=uow, gateway=gateway, retry=RETRY, idle_for=timedelta(seconds=-1))
    assert resumed == 1
    assert gateway.request_ids == ["req-placed"]
    assert uow.orders.rows[order.order_id].status is OrderStatus.CONFIRMED
    assert current_request_id() is None
