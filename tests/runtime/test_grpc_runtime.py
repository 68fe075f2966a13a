"""The shared gRPC runtime over loopback: request ids, error mapping, deadlines and retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy import exc as sql_errors

from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime import errors
from eventforge.runtime.context import current_request_id
from eventforge.runtime.grpc.client import channel
from eventforge.runtime.grpc.server import ServiceServer, start_server
from eventforge.runtime.settings import Settings

SERVICE = "eventforge.orders.v1.OrdersService"


class ScriptedOrders(orders_pb2_grpc.OrdersServiceServicer):
    """Answers GetOrder according to the requested order id, to exercise the runtime."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def GetOrder(  # noqa: N802 - gRPC method name
        self, request: orders_pb2.GetOrderRequest, context: grpc.ServicerContext
    ) -> orders_pb2.GetOrderResponse:
        with self.lock:
            self.calls += 1
            calls = self.calls
        match request.order_id:
            case "invalid":
                raise errors.InvalidArgument(
                    [errors.FieldViolation("order_id", "must be a UUID")], "bad order id"
                )
            case "missing":
                raise errors.NotFound("order missing not found")
            case "crash":
                raise RuntimeError("boom")
            case "database-down":
                raise sql_errors.OperationalError(
                    "SELECT 1", {}, OSError("connection refused"), connection_invalidated=True
                )
            case "database-bug":
                raise sql_errors.IntegrityError("INSERT", {}, ValueError("duplicate key"))
            case "slow":
                time.sleep(1.0)
            case "flaky" if calls < 3:
                context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return orders_pb2.GetOrderResponse(
            order=orders_pb2.Order(
                order_id=request.order_id, customer_id=current_request_id() or ""
            )
        )


@pytest.fixture
def server() -> Iterator[tuple[ServiceServer, ScriptedOrders]]:
    servicer = ScriptedOrders()  # type: ignore[abstract]  # only GetOrder is scripted
    running = start_server(
        Settings(),
        "127.0.0.1:0",
        lambda s: orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, s),
        [SERVICE],
    )
    yield running, servicer
    running.stop(0)


def _stub(running: ServiceServer, deadline: float = 5.0) -> orders_pb2_grpc.OrdersServiceStub:
    settings = Settings(grpc_deadline_seconds=deadline)
    ch = channel(settings, f"127.0.0.1:{running.port}", SERVICE, ["GetOrder"])
    return orders_pb2_grpc.OrdersServiceStub(ch)


def test_request_id_from_metadata_is_current_and_returned(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    stub = _stub(server[0])
    reply, call = stub.GetOrder.with_call(
        orders_pb2.GetOrderRequest(order_id="o-1"), metadata=(("x-request-id", "req-123"),)
    )
    assert reply.order.customer_id == "req-123"
    assert _trailing(call)["x-request-id"] == "req-123"


def test_request_id_is_generated_when_absent_or_malformed(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    stub = _stub(server[0])
    for metadata in ((), (("x-request-id", "bad id with spaces"),)):
        reply, call = stub.GetOrder.with_call(
            orders_pb2.GetOrderRequest(order_id="o"), metadata=metadata
        )
        returned = _trailing(call)["x-request-id"]
        assert len(returned) == 32
        assert reply.order.customer_id == returned


def test_invalid_argument_carries_field_violations(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    stub = _stub(server[0])
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetOrder(
            orders_pb2.GetOrderRequest(order_id="invalid"), metadata=(("x-request-id", "r-9"),)
        )
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("order_id", "must be a UUID")
    ]
    assert _trailing(error)["x-request-id"] == "r-9"


def test_service_errors_map_to_codes_and_crashes_to_internal(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    stub = _stub(server[0])
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetOrder(orders_pb2.GetOrderRequest(order_id="missing"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as crash:
        stub.GetOrder(orders_pb2.GetOrderRequest(order_id="crash"))
    assert crash.value.code() == grpc.StatusCode.INTERNAL
    details = crash.value.details() or ""
    assert "boom" not in details
    assert "request id" in details


def test_an_unreachable_database_is_unavailable_and_other_database_errors_internal(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    # Found by `make chaos`: a database outage answered INTERNAL, which clients do not retry.
    stub = _stub(server[0])
    with pytest.raises(grpc.RpcError) as down:
        stub.GetOrder(orders_pb2.GetOrderRequest(order_id="database-down"))
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    details = down.value.details() or ""
    assert "connection refused" not in details
    assert "request id" in details
    with pytest.raises(grpc.RpcError) as bug:
        stub.GetOrder(orders_pb2.GetOrderRequest(order_id="database-bug"))
    assert bug.value.code() == grpc.StatusCode.INTERNAL


def test_default_deadline_applies_to_calls_without_one(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    stub = _stub(server[0], deadline=0.2)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetOrder(orders_pb2.GetOrderRequest(order_id="slow"))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_idempotent_methods_are_retried_on_unavailable(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    running, servicer = server
    reply = _stub(running).GetOrder(orders_pb2.GetOrderRequest(order_id="flaky"))
    assert reply.order.order_id == "flaky"
    assert servicer.calls == 3


def test_health_reports_each_service_and_shutdown(
    server: tuple[ServiceServer, ScriptedOrders],
) -> None:
    running, _ = server
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", SERVICE):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        running.set_serving(False)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()


def test_probe_drives_health() -> None:
    healthy = threading.Event()
    servicer = ScriptedOrders()  # type: ignore[abstract]  # only GetOrder is scripted
    running = start_server(
        Settings(health_probe_seconds=0.05),
        "127.0.0.1:0",
        lambda s: orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, s),
        [SERVICE],
        probe=healthy.is_set,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)

            def status() -> int:
                reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
                return int(reply.status)

            assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
            healthy.set()
            _eventually(lambda: status() == health_pb2.HealthCheckResponse.SERVING)
            healthy.clear()
            _eventually(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING)
    finally:
        running.stop(0)


def _trailing(call: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in call.trailing_metadata() or ()}


def _eventually(condition: object, timeout: float = 3.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
