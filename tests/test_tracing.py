"""One request id, one trace across all three services, in the span file, the logs and OTLP."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.orders.v1 import orders_pb2_grpc
from eventforge.runtime.telemetry import SpanRecord, read_span_file
from eventforge.topology import TOPOLOGY
from eventforge.trace_edges import EDGES, SCHEDULER, Edge, observed_edges
from tests.fixtures.orders import order_request, wait_confirmed
from tests.fixtures.otlp import OtlpReceiver
from tests.fixtures.services import StartService


def test_declared_async_edges_are_exactly_the_topology_subscriptions() -> None:
    from_topology = {
        Edge(str(topic.publisher), queue.consumer, "async", event_type)
        for queue in TOPOLOGY.queues
        if queue.topic is not None
        for topic in [TOPOLOGY.topic(queue.topic)]
        if topic.publisher is not None
        for event_type in queue.event_types or ()
    }
    from_topology |= {
        Edge(SCHEDULER, job.target, "async", job.handler_key) for job in TOPOLOGY.jobs
    }
    assert {edge for edge in EDGES if edge.kind == "async"} == from_topology


@pytest.fixture
def webhook_receiver() -> Iterator[int]:
    """A loopback endpoint that acknowledges every POST (204); its port."""

    class Acknowledge(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Acknowledge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.integration
@pytest.mark.timeout(300)  # nine processes start on two cores
def test_one_trace_follows_an_order_across_every_hop(
    start_service: StartService,
    otlp_receiver: OtlpReceiver,
    webhook_receiver: int,
    tmp_path: Path,
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "EVENTFORGE_SPAN_FILE": str(spans_file),
    }
    # The notifier may POST to the test's receiver on loopback.
    env["EVENTFORGE_NOTIFIER_WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    processes = {
        (service, role): start_service(service, role, env=env)
        for service in ("orders", "files", "notifier")
        for role in ("api", "worker", "relay")
    }
    api, worker = processes[("orders", "api")], processes[("orders", "worker")]
    for service in ("orders", "files", "notifier"):
        processes[(service, "api")].wait_serving(timeout=120)
    with grpc.insecure_channel(processes[("notifier", "api")].address) as channel:
        hook = notifier_pb2_grpc.NotifierServiceStub(channel).RegisterWebhook(
            notifier_pb2.RegisterWebhookRequest(
                url=f"http://127.0.0.1:{webhook_receiver}/trace",
                event_types=["order.confirmed", "receipt.ready"],
            ),
            timeout=5,
        )
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    with grpc.insecure_channel(api.address) as channel:
        stub = orders_pb2_grpc.OrdersServiceStub(channel)
        created, call = stub.CreateOrder.with_call(
            order_request(request_id, customer_id="cust-trace", customer_email="trace@example.com"),
            metadata=(("x-request-id", request_id),),
            timeout=5,
        )
        assert dict(call.trailing_metadata() or ())["x-request-id"] == request_id
        wait_confirmed(stub, created.order.order_id)
    with grpc.insecure_channel(processes[("notifier", "api")].address) as channel:
        notifier = notifier_pb2_grpc.NotifierServiceStub(channel)
        deadline = time.monotonic() + 60
        # The receipt email is the end of the flow: order → files → notifier → files.
        while not any(
            n.event_type == "receipt.ready" and n.status == notifier_pb2.NOTIFICATION_STATUS_SENT
            for n in notifier.ListNotifications(
                notifier_pb2.ListNotificationsRequest(recipient="trace@example.com"), timeout=5
            ).notifications
        ):
            assert time.monotonic() < deadline, "no receipt email"
            time.sleep(0.2)
        while (
            sum(
                d.status == notifier_pb2.DELIVERY_STATUS_SUCCEEDED
                for d in notifier.ListDeliveries(
                    notifier_pb2.ListDeliveriesRequest(webhook_id=hook.webhook.webhook_id),
                    timeout=5,
                ).deliveries
            )
            < 2
        ):
            assert time.monotonic() < deadline, "webhook deliveries not acknowledged"
            time.sleep(0.2)
    for process in processes.values():
        process.stop()  # flushes the span processors

    records = read_span_file(spans_file)
    mine = [r for r in records if r["request_id"] == request_id]
    trace_ids = {r["trace_id"] for r in mine}
    assert len(trace_ids) == 1, trace_ids
    [trace_id] = trace_ids
    in_trace = [r for r in records if r["trace_id"] == trace_id]
    assert all(r["request_id"] == request_id for r in in_trace)

    def one(kind: str, event_type: str | None = None, name: str | None = None) -> SpanRecord:
        [found] = [
            r
            for r in in_trace
            if r["kind"] == kind
            and event_type in (None, r["attributes"].get("eventforge.event_type"))
            and name in (None, r["name"])
        ]
        return found

    server = one("SERVER", name="/eventforge.orders.v1.OrdersService/CreateOrder")
    producer = one("PRODUCER", "order.placed")
    consumer = one("CONSUMER", "order.placed")
    confirmed = one("PRODUCER", "order.confirmed")  # published by the saga, same trace
    assert confirmed["request_id"] == request_id
    assert consumer["parent_span_id"] == producer["span_id"]
    assert producer["span_id"] in {link["span_id"] for link in consumer["links"]}
    ancestors = {
        r["span_id"] for r in in_trace if r["start_unix_nano"] <= producer["start_unix_nano"]
    }
    assert producer["parent_span_id"] in ancestors
    names = {r["name"] for r in in_trace}
    assert {"saga reserve_inventory", "saga charge_payment", "saga confirm"} <= names
    # The order's effects on the outside world are on its trace too: two emails (confirmed,
    # receipt) through SES, two webhook POSTs, and the notification.sent events they publish.
    sends = [r for r in in_trace if r["name"] == "email send"]
    assert sorted(r["attributes"]["eventforge.event_type"] for r in sends) == [
        "order.confirmed",
        "receipt.ready",
    ]
    ses_calls = [r for r in in_trace if r["attributes"].get("rpc.service") == "SES"]
    assert {r["parent_span_id"] for r in ses_calls} == {r["span_id"] for r in sends}
    # Endpoints other tests registered in this database get the order's events too.
    posts = [
        r
        for r in in_trace
        if r["name"] == "webhook deliver"
        and r["attributes"]["eventforge.webhook_id"] == hook.webhook.webhook_id
    ]
    assert sorted(r["attributes"]["eventforge.event_type"] for r in posts) == [
        "order.confirmed",
        "receipt.ready",
    ]
    assert all(r["kind"] == "CLIENT" for r in posts)
    announced = [
        r
        for r in in_trace
        if r["kind"] == "PRODUCER"
        and r["attributes"].get("eventforge.event_type") == ("notification.sent")
    ]
    assert len(announced) >= 2  # one per email, published with the order's request id
    edges = observed_edges(records)
    assert edges <= EDGES, edges - EDGES
    assert {
        Edge("orders", "orders", "async", "order.placed"),
        Edge("orders", "files", "async", "order.confirmed"),
        Edge("orders", "notifier", "async", "order.confirmed"),
        Edge("files", "orders", "grpc", "OrdersService/GetOrder"),
        Edge("files", "notifier", "async", "receipt.ready"),
        Edge("notifier", "files", "grpc", "FilesService/GetDownloadUrl"),
        Edge("notifier", "ses", "external", "SES/SendEmail"),
        Edge("notifier", "webhook endpoint", "external", "POST"),
    } <= edges
    services_in_trace = {r["service"] for r in in_trace}
    assert services_in_trace == {"eventforge-orders", "eventforge-files", "eventforge-notifier"}

    for process in (api, worker):
        lines = [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]
        tagged = [line for line in lines if line.get("request_id") == request_id]
        assert tagged, f"no log line of {process.role} carries the request id"
        assert {line["trace_id"] for line in tagged} == {trace_id}

    exported = [s for s in otlp_receiver.spans() if s.trace_id == trace_id]
    assert {s.name for s in exported} >= {server["name"], producer["name"], consumer["name"]}
    assert all(s.attributes.get("request_id") == request_id for s in exported)
    assert {s.service for s in exported} == services_in_trace
