"""Orders end to end: gRPC API, outbox relay, SNS→SQS, worker saga, on PostgreSQL and moto."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.settings import Settings
from tests.fixtures.orders import order_line, order_request
from tests.fixtures.services import ProcessGroup

pytestmark = pytest.mark.integration

Status = orders_pb2.OrderStatus
TERMINAL = {
    Status.ORDER_STATUS_CONFIRMED,
    Status.ORDER_STATUS_FAILED,
    Status.ORDER_STATUS_CANCELLED,
    Status.ORDER_STATUS_COMPENSATION_FAILED,
}


@pytest.fixture(scope="module")
def orders(module_processes: ProcessGroup) -> Iterator[orders_pb2_grpc.OrdersServiceStub]:
    api = module_processes.start("orders", "api")
    module_processes.start("orders", "worker")
    module_processes.start("orders", "relay")
    api.wait_serving()
    with grpc.insecure_channel(api.address) as channel:
        yield orders_pb2_grpc.OrdersServiceStub(channel)


@pytest.fixture(scope="module")
def db(stack_settings: Settings) -> Iterator[sa.Engine]:
    engine = create_service_engine(stack_settings, "orders")
    yield engine
    engine.dispose()


def request(
    token: str = "tok_success",
    *,
    customer_id: str | None = None,
    currency: str = "USD",
    items: Sequence[orders_pb2.OrderLineRequest] | None = None,
) -> orders_pb2.CreateOrderRequest:
    """Under a new key, by a new customer (or `customer_id`); by default two books (50.00 USD)."""
    return order_request(
        uuid.uuid4().hex,
        customer_id=customer_id or f"cust-{uuid.uuid4().hex[:8]}",
        customer_email="ada@example.com",
        token=token,
        currency=currency,
        items=[order_line("SKU-BOOK-001", quantity=2, amount_minor=2500)]
        if items is None
        else items,
    )


def settle(
    stub: orders_pb2_grpc.OrdersServiceStub, order_id: str, timeout: float = 30
) -> orders_pb2.Order:
    deadline = time.monotonic() + timeout
    while True:
        order = stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5).order
        if order.status in TERMINAL or time.monotonic() > deadline:
            return order
        time.sleep(0.1)


def charges(db: sa.Engine, order_id: str) -> tuple[int, int]:
    """(charges, refunds) the local payment provider recorded for an order."""
    with db.connect() as connection:
        charged = connection.execute(
            sa.text("SELECT count(*) FROM payment_charges WHERE order_id = :o"), {"o": order_id}
        ).scalar_one()
        refunded = connection.execute(
            sa.text(
                "SELECT count(*) FROM payment_refunds r JOIN payment_charges c "
                "ON c.payment_id = r.payment_id WHERE c.order_id = :o"
            ),
            {"o": order_id},
        ).scalar_one()
    return int(charged), int(refunded)


def test_happy_path_reaches_confirmed_and_charges_once(
    orders: orders_pb2_grpc.OrdersServiceStub, db: sa.Engine
) -> None:
    created = orders.CreateOrder(request(), timeout=5).order
    assert created.status == Status.ORDER_STATUS_PENDING
    assert created.total.amount_minor == 5000
    order = settle(orders, created.order_id)
    assert order.status == Status.ORDER_STATUS_CONFIRMED
    assert charges(db, created.order_id) == (1, 0)


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        ("tok_decline", Status.ORDER_STATUS_FAILED, "card declined"),
        ("tok_insufficient_funds", Status.ORDER_STATUS_FAILED, "insufficient funds"),
        ("tok_timeout", Status.ORDER_STATUS_FAILED, "timed out"),
        ("tok_transient_2", Status.ORDER_STATUS_CONFIRMED, ""),
    ],
)
def test_each_payment_token_reaches_its_end_state(
    orders: orders_pb2_grpc.OrdersServiceStub, db: sa.Engine, token: str, status: int, reason: str
) -> None:
    created = orders.CreateOrder(request(token), timeout=5).order
    order = settle(orders, created.order_id)
    assert order.status == status, order
    assert reason in order.failure_reason
    expected = (1, 0) if status == Status.ORDER_STATUS_CONFIRMED else (0, 0)
    assert charges(db, created.order_id) == expected


def test_out_of_stock_fails_and_releases_nothing(
    orders: orders_pb2_grpc.OrdersServiceStub, db: sa.Engine
) -> None:
    scarce = order_line("SKU-LIMITED-001", quantity=4, amount_minor=9900)
    created = orders.CreateOrder(request(items=[scarce]), timeout=5).order
    order = settle(orders, created.order_id)
    assert order.status == Status.ORDER_STATUS_FAILED
    assert "insufficient stock for SKU-LIMITED-001" in order.failure_reason
    with db.connect() as connection:
        stock = connection.execute(
            sa.text("SELECT stock FROM products WHERE sku = 'SKU-LIMITED-001'")
        ).scalar_one()
    assert stock == 3


def test_cancel_before_confirmation_compensates(
    orders: orders_pb2_grpc.OrdersServiceStub, db: sa.Engine
) -> None:
    with db.connect() as connection:
        stock_before = connection.execute(
            sa.text("SELECT stock FROM products WHERE sku = 'SKU-BOOK-001'")
        ).scalar_one()
    # tok_timeout keeps the saga retrying the charge for a while: a window to cancel in.
    created = orders.CreateOrder(request("tok_timeout"), timeout=5).order
    cancelled = orders.CancelOrder(
        orders_pb2.CancelOrderRequest(order_id=created.order_id, reason="changed my mind"),
        timeout=10,
    ).order
    again = orders.CancelOrder(
        orders_pb2.CancelOrderRequest(order_id=created.order_id), timeout=10
    ).order
    order = settle(orders, created.order_id)
    assert cancelled.status in (Status.ORDER_STATUS_CANCELLED, Status.ORDER_STATUS_COMPENSATING)
    assert again.status in (Status.ORDER_STATUS_CANCELLED, Status.ORDER_STATUS_COMPENSATING)
    assert order.status == Status.ORDER_STATUS_CANCELLED
    assert order.failure_reason == "changed my mind"
    time.sleep(1.5)  # let the saga's last charge attempt finish
    assert charges(db, created.order_id) == (0, 0)
    with db.connect() as connection:
        stock_after = connection.execute(
            sa.text("SELECT stock FROM products WHERE sku = 'SKU-BOOK-001'")
        ).scalar_one()
    assert stock_after == stock_before


def test_confirmed_orders_cannot_be_cancelled(orders: orders_pb2_grpc.OrdersServiceStub) -> None:
    created = orders.CreateOrder(request(), timeout=5).order
    assert settle(orders, created.order_id).status == Status.ORDER_STATUS_CONFIRMED
    with pytest.raises(grpc.RpcError) as raised:
        orders.CancelOrder(orders_pb2.CancelOrderRequest(order_id=created.order_id), timeout=5)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_twenty_concurrent_identical_requests_make_one_order(
    orders: orders_pb2_grpc.OrdersServiceStub, db: sa.Engine
) -> None:
    same = request()
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda _: orders.CreateOrder(same, timeout=10), range(20)))
    ids = {reply.order.order_id for reply in replies}
    assert len(ids) == 1
    with db.connect() as connection:
        made = connection.execute(
            sa.text("SELECT count(*) FROM orders WHERE customer_id = :c"), {"c": same.customer_id}
        ).scalar_one()
        placed = connection.execute(
            sa.text(
                "SELECT count(*) FROM outbox WHERE subject = :o AND event_type = 'order.placed'"
            ),
            {"o": ids.pop()},
        ).scalar_one()
    assert (made, placed) == (1, 1)


def test_same_key_different_request_is_already_exists(
    orders: orders_pb2_grpc.OrdersServiceStub,
) -> None:
    first = request()
    orders.CreateOrder(first, timeout=5)
    changed = orders_pb2.CreateOrderRequest()
    changed.CopyFrom(first)
    changed.items[0].quantity = 3
    with pytest.raises(grpc.RpcError) as raised:
        orders.CreateOrder(changed, timeout=5)
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_invalid_requests_get_field_violations(orders: orders_pb2_grpc.OrdersServiceStub) -> None:
    bad = request(
        currency="usd",
        items=[order_line("SKU-BOOK-001", quantity=0, amount_minor=0)],
    )
    with pytest.raises(grpc.RpcError) as raised:
        orders.CreateOrder(bad, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    assert status is not None
    details = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(details)
    fields = {v.field for v in details.field_violations}
    assert {"currency", "items[0].quantity", "items[0].unit_price.amount_minor"} <= fields


def test_list_pages_and_receipt_preconditions(orders: orders_pb2_grpc.OrdersServiceStub) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    made = [
        orders.CreateOrder(request("tok_decline", customer_id=customer), timeout=5).order.order_id
        for _ in range(3)
    ]
    first = orders.ListOrders(orders_pb2.ListOrdersRequest(customer_id=customer, page_size=2))
    second = orders.ListOrders(
        orders_pb2.ListOrdersRequest(
            customer_id=customer, page_size=2, page_token=first.next_page_token
        )
    )
    listed = [o.order_id for o in first.orders] + [o.order_id for o in second.orders]
    assert listed == list(reversed(made))
    assert second.next_page_token == ""
    settle(orders, made[0])
    with pytest.raises(grpc.RpcError) as raised:
        orders.GetReceiptUrl(orders_pb2.GetReceiptUrlRequest(order_id=made[0]), timeout=5)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
