"""Metrics reach an OTLP receiver: from real service processes over OTLP/gRPC, and over
OTLP/HTTP with the variables `make up` gives its children (a metrics endpoint, http/protobuf)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import pytest

from eventforge.orders.v1 import orders_pb2_grpc
from eventforge.runtime.metrics import Metrics
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import configure_telemetry
from tests.fixtures.emulator import TEST_PREFIX
from tests.fixtures.orders import order_request, wait_confirmed
from tests.fixtures.otlp import OtlpHttpMetricsReceiver, OtlpMetricsReceiver, ReceivedPoint
from tests.fixtures.services import StartService

INTERVAL_MS = "500"


def wait_for_points(
    points: Callable[[], list[ReceivedPoint]], what: str, timeout: float = 60.0
) -> list[ReceivedPoint]:
    deadline = time.monotonic() + timeout
    while not (found := points()):
        assert time.monotonic() < deadline, f"no {what} received"
        time.sleep(0.2)
    return found


def create_order(address: str, key: str) -> str:
    """Place an order that the saga confirms; its id once it is CONFIRMED."""
    with grpc.insecure_channel(address) as channel:
        stub = orders_pb2_grpc.OrdersServiceStub(channel)
        created = stub.CreateOrder(
            order_request(key, customer_id="cust-metrics", customer_email="metrics@example.com"),
            timeout=5,
        )
        order_id = created.order.order_id
        wait_confirmed(stub, order_id)
    return order_id


@pytest.mark.integration
@pytest.mark.timeout(300)  # four processes start on two cores
def test_the_services_export_their_metrics_over_otlp_grpc(
    start_service: StartService, otlp_metrics_receiver: OtlpMetricsReceiver
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": otlp_metrics_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": INTERVAL_MS,
    }
    api = start_service("orders", "api", env=env)
    for role in ("worker", "relay"):
        start_service("orders", role, env=env)
    start_service("notifier", "worker", env=env)
    api.wait_serving(timeout=120)

    create_order(api.address, f"metrics-{uuid.uuid4().hex[:12]}")

    received = otlp_metrics_receiver.points
    orders, notifier = "eventforge-orders", "eventforge-notifier"
    queue = f"{TEST_PREFIX}-orders-orders"

    created = wait_for_points(
        lambda: [
            p
            for p in received(
                "rpc.server.duration",
                **{"rpc.method": "CreateOrder", "rpc.grpc.status_code": 0},
            )
            if p.service == orders
        ],
        "rpc.server.duration of CreateOrder",
    )
    assert created[-1].unit == "ms"
    assert created[-1].attributes == {
        "rpc.system": "grpc",
        "rpc.service": "eventforge.orders.v1.OrdersService",
        "rpc.method": "CreateOrder",
        "rpc.grpc.status_code": 0,
    }
    assert created[-1].value >= 1
    assert created[-1].total > 0

    for gauge, unit in (
        ("eventforge.outbox.backlog", "{row}"),
        ("eventforge.outbox.oldest_age", "s"),
    ):
        backlog = wait_for_points(
            partial(received, gauge, **{"eventforge.service": "orders"}), gauge
        )
        assert {p.service for p in backlog} == {orders}
        assert backlog[-1].unit == unit
        assert backlog[-1].value >= 0

    consumed = wait_for_points(
        lambda: received(
            "messaging.client.consumed.messages",
            **{"messaging.destination.name": queue, "eventforge.outcome": "processed"},
        ),
        f"messages consumed from {queue}",
    )
    assert consumed[-1].service == orders
    assert consumed[-1].value >= 1
    assert consumed[-1].attributes["messaging.system"] == "aws_sqs"
    wait_for_points(
        lambda: received("messaging.process.duration", **{"messaging.destination.name": queue}),
        "messaging.process.duration",
    )

    outcomes = wait_for_points(
        lambda: received("eventforge.saga.outcomes", **{"eventforge.saga.outcome": "CONFIRMED"}),
        "a CONFIRMED saga outcome",
    )
    assert outcomes[-1].service == orders
    assert outcomes[-1].value >= 1
    steps = wait_for_points(
        lambda: received("eventforge.saga.step.duration", **{"eventforge.saga.step": "confirm"}),
        "the saga's confirm step",
    )
    assert steps[-1].unit == "s"

    emails = wait_for_points(
        lambda: received(
            "eventforge.notifier.deliveries",
            **{"eventforge.notifier.channel": "email", "eventforge.notifier.outcome": "succeeded"},
        ),
        "an email delivery",
    )
    assert emails[-1].service == notifier
    assert emails[-1].attributes["eventforge.notifier.attempt"] >= 1

    # The workers' view of their queues: depth sampled once collected, age of each receive.
    depth = wait_for_points(
        lambda: received("eventforge.queue.depth", **{"messaging.destination.name": queue}),
        "the depth of the orders queue",
    )
    assert {p.attributes["eventforge.queue.state"] for p in depth} == {
        "visible",
        "in_flight",
        "delayed",
    }
    wait_for_points(
        lambda: received("eventforge.queue.oldest_age", **{"messaging.destination.name": queue}),
        "the oldest age of the orders queue",
    )


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_service_exports_over_otlp_http_with_the_variables_make_up_sets(
    start_service: StartService, otlp_http_metrics_receiver: OtlpHttpMetricsReceiver
) -> None:
    api = start_service(
        "orders",
        "api",
        env={
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": otlp_http_metrics_receiver.endpoint,
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": INTERVAL_MS,
        },
    )
    api.wait_serving(timeout=120)  # health checks: calls the server times

    checks = wait_for_points(
        lambda: otlp_http_metrics_receiver.points(
            "rpc.server.duration",
            **{"rpc.service": "grpc.health.v1.Health", "rpc.method": "Check"},
        ),
        "rpc.server.duration over OTLP/HTTP",
    )
    assert checks[-1].service == "eventforge-orders"
    assert set(otlp_http_metrics_receiver.paths) == {"/v1/metrics"}
    assert set(otlp_http_metrics_receiver.content_types) == {"application/x-protobuf"}


def test_the_last_measurements_are_flushed_at_shutdown(
    otlp_http_metrics_receiver: OtlpHttpMetricsReceiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", otlp_http_metrics_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")  # only the shutdown exports
    telemetry = configure_telemetry("notifier", Settings(data_dir=tmp_path), set_global=False)
    Metrics(telemetry.meter_provider).delivery("webhook", "succeeded", 1)
    assert otlp_http_metrics_receiver.points() == []

    telemetry.shutdown()

    [point] = otlp_http_metrics_receiver.points("eventforge.notifier.deliveries")
    assert point.service == "eventforge-notifier"
    assert point.value == 1
    assert point.attributes == {
        "eventforge.notifier.channel": "webhook",
        "eventforge.notifier.outcome": "succeeded",
        "eventforge.notifier.attempt": 1,
    }
