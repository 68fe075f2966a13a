"""Requests with many field violations answer INVALID_ARGUMENT to a client with default options.

A default grpcio client drops trailing metadata over 8 KiB (at random) and always over 16 KiB,
failing the call with RESOURCE_EXHAUSTED; the servers here run in this process on the test
database and are called over loopback through `grpc.insecure_channel(address)`, no options.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from eventforge.notifier.bootstrap import bootstrap as notifier_bootstrap
from eventforge.notifier.entrypoints.api import SERVICE_NAME as NOTIFIER
from eventforge.notifier.entrypoints.api import NotifierServicer
from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.orders.bootstrap import bootstrap as orders_bootstrap
from eventforge.orders.entrypoints.api import SERVICE_NAME as ORDERS
from eventforge.orders.entrypoints.api import OrdersServicer
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime.grpc import rich_status
from eventforge.runtime.settings import Settings
from tests.fixtures.orders import order_line, order_request
from tests.fixtures.services import served_in_process

pytestmark = pytest.mark.integration

CALLS = 5  # the drop between 8 and 16 KiB is random: one lucky call proves little
WIRE_BUDGET = 5 * 1024
TRUNCATED = rich_status.TRUNCATED_FIELD


@pytest.fixture(scope="module")
def orders(stack_settings: Settings) -> Iterator[orders_pb2_grpc.OrdersServiceStub]:
    app = orders_bootstrap(stack_settings)
    servicer = OrdersServicer(app)
    with (
        served_in_process(
            stack_settings,
            lambda server: orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, server),
            ORDERS,
            app.engine,
        ) as address,
        grpc.insecure_channel(address) as channel,
    ):
        yield orders_pb2_grpc.OrdersServiceStub(channel)


@pytest.fixture(scope="module")
def notifier(stack_settings: Settings) -> Iterator[notifier_pb2_grpc.NotifierServiceStub]:
    settings = Settings(
        **{**stack_settings.model_dump(), "notifier_webhook_allowed_hosts": "127.0.0.1"}
    )
    app = notifier_bootstrap(settings)
    servicer = NotifierServicer(app)
    with (
        served_in_process(
            settings,
            lambda server: notifier_pb2_grpc.add_NotifierServiceServicer_to_server(
                servicer, server
            ),
            NOTIFIER,
            app.engine,
        ) as address,
        grpc.insecure_channel(address) as channel,
    ):
        yield notifier_pb2_grpc.NotifierServiceStub(channel)


def violations_of(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The field violations of an INVALID_ARGUMENT, read as clients are told to."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin"
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    return [(v.field, v.description) for v in bad_request.field_violations]


def trailer_bytes(error: grpc.RpcError) -> int:
    """grpc-message plus the other trailers (binary ones in base64), as sent."""
    size = len("grpc-message") + len(error.details() or "")
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        raw = base64.b64encode(value) if isinstance(value, bytes) else value.encode()
        size += len(key) + len(raw)
    return size


def invalid_lines(count: int) -> orders_pb2.CreateOrderRequest:
    """`count` lines each wrong four ways: unknown SKU (64 characters), no units, no price, EUR."""
    lines = [
        order_line(f"SKU-{i:04d}-".ljust(64, "X"), quantity=0, amount_minor=0, currency="EUR")
        for i in range(count)
    ]
    return order_request(
        uuid.uuid4().hex, customer_id="cust-size", customer_email="ada@example.com", items=lines
    )


@pytest.mark.parametrize(("lines", "expected"), [(1, 4), (50, 200), (500, 201)])
def test_create_order_with_many_invalid_lines_is_invalid_argument(
    orders: orders_pb2_grpc.OrdersServiceStub, lines: int, expected: int
) -> None:
    # Lines past the 50th are not checked one by one: "items: must have at most 50 lines".
    request = invalid_lines(lines)
    for _ in range(CALLS):
        with pytest.raises(grpc.RpcError) as raised:
            orders.CreateOrder(request, timeout=10)
        found = violations_of(raised.value)
        message = raised.value.details() or ""
        assert len(message.encode()) <= rich_status.MAX_MESSAGE_BYTES
        assert trailer_bytes(raised.value) < WIRE_BUDGET
        assert message.startswith(f"invalid request: {expected} field violations; first: ")
        shown = min(expected, rich_status.MAX_VIOLATIONS)
        assert ("items[0].quantity", "must be between 1 and 100") in found
        if expected > shown:
            assert len(found) == shown + 1
            assert found[-1] == (TRUNCATED, f"{expected - shown} more violations not shown")
        else:
            assert len(found) == expected
            assert all(field != TRUNCATED for field, _ in found)


def test_register_webhook_with_repeated_event_types_is_invalid_argument(
    notifier: notifier_pb2_grpc.NotifierServiceStub,
) -> None:
    request = notifier_pb2.RegisterWebhookRequest(
        url="http://127.0.0.1:9/hook", event_types=["order.confirmed"] * 30, description="dup"
    )
    for _ in range(CALLS):
        with pytest.raises(grpc.RpcError) as raised:
            notifier.RegisterWebhook(request, timeout=10)
        found = violations_of(raised.value)
        assert trailer_bytes(raised.value) < WIRE_BUDGET
        assert found[:-1] == [(f"event_types[{i}]", "appears twice") for i in range(1, 21)]
        assert found[-1] == (TRUNCATED, "9 more violations not shown")
        assert re.match(
            r"^invalid request: 29 field violations; first: event_types\[1\]: appears twice$",
            raised.value.details() or "",
        )


def test_register_webhook_reports_each_repetition(
    notifier: notifier_pb2_grpc.NotifierServiceStub,
) -> None:
    request = notifier_pb2.RegisterWebhookRequest(
        url="http://127.0.0.1:9/hook",
        event_types=["order.failed", "receipt.ready", "order.failed", "order.failed"],
    )
    with pytest.raises(grpc.RpcError) as raised:
        notifier.RegisterWebhook(request, timeout=10)
    assert violations_of(raised.value) == [
        ("event_types[2]", "appears twice"),
        ("event_types[3]", "appears twice"),
    ]
