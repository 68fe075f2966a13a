"""The dashboard's pages and JSON over a span file, OTLP/HTTP in real protobuf, its guards."""

from __future__ import annotations

import gzip
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic import ValidationError

from eventforge.cli.up import dashboard_url, metrics_environment
from eventforge.dashboard.app import create_app
from eventforge.dashboard.saga import saga_view
from eventforge.dashboard.server import BackgroundServer
from eventforge.dashboard.spans import SpanStore
from eventforge.runtime.emulator import free_port
from eventforge.runtime.settings import Settings
from tests.dashboard.conftest import BASE_URL, T0, order_trace, span, write_spans


def test_requests_list_opens_the_waterfall_of_every_service(
    client: TestClient, dashboard_settings: Settings
) -> None:
    noise = span("ff", "01", "/grpc.health.v1.Health/Check", kind="SERVER", request_id="probe")
    write_spans(dashboard_settings.spans_path, [*order_trace(), noise])

    listing = client.get("/requests")
    assert listing.status_code == 200
    assert 'href="/requests/req-1"' in listing.text
    assert "probe" not in listing.text  # health checks are hidden unless asked for
    assert "probe" in client.get("/requests?all=true").text
    assert client.get("/requests?q=notifier").text.count('href="/requests/req-1"') == 1
    assert 'href="/requests/req-1"' not in client.get("/requests?q=nothing-like-it").text

    page = client.get("/requests/req-1")
    assert page.status_code == 200
    rows = re.findall(
        r'<div class="wf-row span([^"]*)" data-span="([0-9a-f]+)" data-service="(\w+)"', page.text
    )
    assert len(rows) == 14
    assert {service for _flags, _id, service in rows} == {"orders", "files", "notifier"}
    flags = {span_id[:2]: classes for classes, span_id, _service in rows}
    assert "async" in flags["03"]
    assert "async" in flags["04"]
    assert "async" not in flags["02"]
    assert "error" in flags["0e"]
    assert "error" not in flags["06"]
    # One colour per service, on the bars.
    assert "--c: #2563eb" in page.text
    assert "--c: #059669" in page.text
    assert "--c: #d97706" in page.text
    # What a click shows: attributes, events and links of every span.
    data = re.search(
        r'<script type="application/json" id="span-data">(.*?)</script>', page.text, re.S
    )
    assert data is not None
    details = json.loads(data.group(1))
    charge = details["06".ljust(16, "0")]
    assert ["eventforge.order_id", "ord-1"] in charge["attributes"]
    assert charge["events"][0]["name"] == "retry"
    assert charge["events"][0]["attributes"] == [["attempt", "2"]]
    failed = details["0e".ljust(16, "0")]
    assert failed["status"] == "ERROR"
    assert failed["status_description"] == "503 Service Unavailable"
    consumer = details["04".ljust(16, "0")]
    assert consumer["links"][0]["span_id"] == "03".ljust(16, "0")
    assert "orders · eventforge-orders-events publish" in consumer["async_hop"]

    assert client.get("/requests/unknown").status_code == 404
    trace_page = client.get(f"/traces/{'a1'.ljust(32, '0')}")
    assert trace_page.status_code == 200
    assert trace_page.text.count('class="wf-row span') == 14
    api = client.get("/api/requests").json()
    assert [r["request_id"] for r in api] == ["req-1"]
    assert api[0]["services"] == ["files", "notifier", "orders"]
    assert api[0]["errors"] == 1


def test_the_span_file_is_tailed_and_an_unfinished_line_waits(
    client: TestClient, dashboard_settings: Settings
) -> None:
    path = dashboard_settings.spans_path
    assert client.get("/api/requests").json() == []  # no file yet
    first = span("b1", "01", "first", request_id="req-a")
    later = span("b2", "01", "later", request_id="req-b", start_ms=10)
    line = json.dumps(later)
    write_spans(path, [first], unfinished=line[:40])
    assert [r["request_id"] for r in client.get("/api/requests").json()] == ["req-a"]
    with path.open("a") as file:
        file.write(line[40:] + "\n")
    assert [r["request_id"] for r in client.get("/api/requests").json()] == ["req-b", "req-a"]
    path.unlink()  # `make clean`: a new file starts over
    write_spans(path, [span("b3", "01", "again", request_id="req-c")])
    assert [r["request_id"] for r in client.get("/api/requests").json()] == ["req-c"]


def test_a_long_span_file_is_read_from_near_its_end(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    write_spans(path, [span(f"c{n}", "01", f"span {n}", request_id=f"r{n}") for n in range(50)])
    store = SpanStore(path, max_initial_bytes=path.stat().st_size // 2)
    requests = store.index().requests
    assert 20 < len(requests) < 30
    assert "r49" in requests
    assert "r0" not in requests


def test_an_internal_service_exports_its_own_spans_into_the_same_waterfall(
    dashboard_settings: Settings,
) -> None:
    """A caller's OTLP/HTTP exporter points at the dashboard; its CLIENT span becomes the
    parent of the orders span in the span file (the trace context it propagated)."""
    app = create_app(dashboard_settings)
    host, port = "127.0.0.1", free_port()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-backend"}))
    with BackgroundServer(app, host, port) as server:
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{server.url}/v1/traces"))
        )
        tracer = provider.get_tracer("shop")
        with tracer.start_as_current_span(
            "checkout", kind=trace.SpanKind.CLIENT, attributes={"cart.items": 2}
        ) as caller:
            caller.add_event("retrying", {"attempt": 1})
            context = caller.get_span_context()
            time.sleep(0.01)  # the call the orders span stands for
        provider.shutdown()
        trace_id = trace.format_trace_id(context.trace_id)
        caller_id = trace.format_span_id(context.span_id)
        write_spans(
            dashboard_settings.spans_path,
            [
                {
                    **span(
                        "x",
                        "e1",
                        "/eventforge.orders.v1.OrdersService/CreateOrder",
                        kind="SERVER",
                        request_id="req-shop",
                        attributes={
                            "rpc.service": "eventforge.orders.v1.OrdersService",
                            "rpc.method": "CreateOrder",
                        },
                    ),
                    "trace_id": trace_id,
                    "parent_span_id": caller_id,
                    "start_unix_nano": time.time_ns() - 8_000_000,
                    "end_unix_nano": time.time_ns() - 2_000_000,
                }
            ],
        )
        with TestClient(app, base_url=BASE_URL) as client:
            page = client.get("/requests/req-shop")
            edges = client.get("/api/map").json()
    assert page.status_code == 200
    assert 'data-service="shop-backend"' in page.text
    assert 'data-service="orders"' in page.text
    assert page.text.index("checkout") < page.text.index("OrdersService/CreateOrder")
    assert {
        "source": "shop-backend",
        "target": "orders",
        "kind": "grpc",
        "via": "OrdersService/CreateOrder",
        "declared": False,
        "observed": True,
    } in edges


def test_otlp_json_and_gzip_are_accepted_and_garbage_refused(client: TestClient) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "billing"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "billing"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "charge",
                                "kind": 3,
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": str(T0 + 2_000_000),
                                "attributes": [
                                    {"key": "request_id", "value": {"stringValue": "req-json"}},
                                    {"key": "retries", "value": {"intValue": "2"}},
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    reply = client.post("/v1/traces", json=body)
    assert reply.status_code == 200, reply.text
    [record] = client.get("/api/requests/req-json").json()["spans"]
    assert record["service"] == "billing"
    assert record["kind"] == "CLIENT"
    assert record["status"] == {"code": "ERROR", "description": "boom"}
    assert record["attributes"]["retries"] == 2
    assert record["duration_ms"] == 2.0

    protobuf = ExportTraceServiceRequest()
    protobuf.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes.fromhex("6b8efff798038103d269b633813fc60c"),
        span_id=bytes.fromhex("fee19b7ec3c1b174"),
        name="zipped",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1,
    )
    reply = client.post(
        "/v1/traces",
        content=gzip.compress(protobuf.SerializeToString()),
        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-protobuf"
    assert client.get("/api/traces/6b8efff798038103d269b633813fc60c").status_code == 200

    garbage = {"content-type": "application/x-protobuf"}
    assert (
        client.post("/v1/traces", content=b"\xff\x00 not protobuf", headers=garbage).status_code
        == 400
    )
    assert (
        client.post("/v1/traces", content=b"x", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    assert (
        client.post(
            "/v1/metrics", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )


def test_metrics_from_a_real_exporter_become_small_charts(dashboard_settings: Settings) -> None:
    app = create_app(dashboard_settings)
    with BackgroundServer(app, "127.0.0.1", free_port()) as server:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{server.url}/v1/metrics"),
            export_interval_millis=3_600_000,
        )
        provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": "eventforge-orders"})
        )
        meter = provider.get_meter("test")
        calls = meter.create_counter("rpc.calls", unit="{call}", description="calls answered")
        duration = meter.create_histogram("rpc.server.duration", unit="ms")
        depth = meter.create_gauge("eventforge.queue.depth", unit="{message}")
        for round_ in range(3):
            calls.add(5, {"rpc.method": "CreateOrder"})
            duration.record(10.0 * (round_ + 1), {"rpc.method": "CreateOrder"})
            duration.record(30.0 * (round_ + 1), {"rpc.method": "CreateOrder"})
            depth.set(round_ + 2, {"eventforge.queue.state": "visible"})
            assert reader.force_flush(10_000)
            time.sleep(0.01)
        provider.shutdown()
        with TestClient(app, base_url=BASE_URL) as client:
            series = {group["name"]: group for group in client.get("/api/metrics").json()}
            page = client.get("/metrics").text
    assert [p[1] for p in series["rpc.calls"]["series"][0]["points"]][:3] == [5.0, 10.0, 15.0]
    assert series["rpc.server.duration"]["kind"] == "histogram"
    assert [p[1] for p in series["eventforge.queue.depth"]["series"][0]["points"]][-1] == 4.0
    assert series["rpc.calls"]["series"][0]["service"] == "eventforge-orders"
    assert page.count('<polyline points="') == 3
    assert "15 {call}" in page
    assert "count 6 · avg 40 ms" in page  # (10 + 30 + 20 + 60 + 30 + 90) / 6


def test_the_service_map_highlights_undeclared_edges(
    client: TestClient, dashboard_settings: Settings
) -> None:
    odd = [
        span(
            "d1",
            "01",
            "files-events publish",
            service="files",
            kind="PRODUCER",
            attributes={"eventforge.event_type": "file.processed"},
        ),
        span(
            "d1",
            "02",
            "orders-files process",
            service="orders",
            kind="CONSUMER",
            parent="01",
            attributes={"eventforge.event_type": "file.processed"},
        ),
    ]
    write_spans(dashboard_settings.spans_path, [*order_trace(), *odd])
    page = client.get("/map").text
    assert re.search(r'<g class="edge undeclared" data-source="files" data-target="orders">', page)
    assert re.search(r'<g class="edge ok" data-source="orders" data-target="files">', page)
    assert re.search(r'<g class="edge ok" data-source="files" data-target="orders">', page)
    assert re.search(r'<g class="edge declared" data-source="notifier" data-target="files">', page)
    rows = client.get("/api/map").json()
    assert {
        "source": "files",
        "target": "orders",
        "kind": "async",
        "via": "file.processed",
        "declared": False,
        "observed": True,
    } in rows


def test_the_saga_timeline_comes_from_the_order_spans(
    client: TestClient, dashboard_settings: Settings
) -> None:
    order = {"eventforge.order_id": "ord-7"}
    failed = {"eventforge.event_type": "order.failed", "eventforge.event_id": "ev-failed"}
    cancelled = [
        span("f1", "01", "saga reserve_inventory", start_ms=5, attributes=order),
        span(
            "f1",
            "02",
            "saga charge_payment",
            start_ms=10,
            attributes=order,
            error="payment declined: card declined",
        ),
        span("f1", "03", "saga compensate", start_ms=20, attributes=order),
        span(
            "f1",
            "04",
            "eventforge-orders-events publish",
            kind="PRODUCER",
            parent="03",
            start_ms=30,
            attributes=failed,
        ),
        span(
            "f1",
            "05",
            "eventforge-notifier-orders process",
            service="notifier",
            kind="CONSUMER",
            parent="04",
            start_ms=40,
            attributes=failed,
        ),
        # The dispatcher's email, in a trace of its own: found by the event id.
        span(
            "f2",
            "01",
            "email send",
            service="notifier",
            start_ms=50,
            request_id=None,
            attributes={"eventforge.event_id": "ev-failed"},
        ),
    ]
    write_spans(dashboard_settings.spans_path, [*order_trace(order_id="ord-1"), *cancelled])
    view = saga_view("ord-7", SpanStore(dashboard_settings.spans_path).index(), None)
    assert [(e.kind, e.title, e.error) for e in view.entries] == [
        ("step", "reserve_inventory", False),
        ("step", "charge_payment", True),
        ("compensation", "compensate", False),
        ("event", "published order.failed", False),
        ("consumed", "notifier consumed order.failed", False),
        ("email", "email for order.failed", False),
    ]
    assert view.event_ids == ["ev-failed"]
    assert view.request_ids == ["req-1"]
    confirmed = saga_view("ord-1", SpanStore(dashboard_settings.spans_path).index(), None)
    assert [e.kind for e in confirmed.entries] == [
        "request",
        "event",
        "consumed",
        "step",
        "step",
        "step",
        "event",
        "consumed",
        "consumed",
        "email",
    ]

    page = client.get("/orders/ord-7")  # the services are down: GetOrder fails, shown as such
    assert page.status_code == 200
    assert "GetOrder: UNAVAILABLE" in page.text
    assert "reserve_inventory" in page.text
    assert 'href="/orders/ord-7"' in client.get("/orders").text
    redirect = client.get("/orders?order_id=ord-7", follow_redirects=False)
    assert redirect.headers["location"] == "/orders/ord-7"


def test_outbox_backlog_per_service_without_creating_databases(
    client: TestClient, dashboard_settings: Settings
) -> None:
    from sqlalchemy import insert

    from eventforge.runtime.db import create_service_engine
    from eventforge.runtime.messaging.schema import outbox_table
    from eventforge.runtime.migrations import migrate

    backlog = {row["service"]: row for row in client.get("/api/outbox").json()}
    assert backlog["orders"]["unpublished"] is None
    assert "not migrated" in backlog["orders"]["error"]
    assert not (dashboard_settings.data_dir / "orders.db").exists()  # reading created nothing

    migrate(dashboard_settings, "orders")
    engine = create_service_engine(dashboard_settings, "orders")
    created = datetime.now(UTC) - timedelta(seconds=90)
    with engine.begin() as connection:
        for number, error in enumerate((None, "Throttling")):
            connection.execute(
                insert(outbox_table).values(
                    event_id=str(uuid.uuid4()),
                    event_type="order.placed",
                    topic="orders-events",
                    subject=f"o{number}",
                    body="{}",
                    attributes={},
                    created_at=created,
                    last_error=error,
                )
            )
    engine.dispose()
    backlog = {row["service"]: row for row in client.get("/api/outbox").json()}
    assert backlog["orders"]["unpublished"] == 2
    assert backlog["orders"]["failing"] == 1
    assert 85 < backlog["orders"]["oldest_age_seconds"] < 300
    assert backlog["files"]["unpublished"] is None
    page = client.get("/queues").text
    assert re.search(r'<tr class="warn" data-service="orders">', page)


def test_health_and_queues_say_what_is_unreachable(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert [h["service"] for h in health] == ["orders", "files", "notifier", "ingest"]
    assert {h["status"] for h in health} == {"UNAVAILABLE"}
    assert client.get("/api/queues").json()["error"]
    page = client.get("/")
    assert page.status_code == 200
    assert "UNAVAILABLE" in page.text
    assert "Cannot read the queues" in page.text


def test_other_hosts_and_origins_are_refused(client: TestClient) -> None:
    # A name another site points at 127.0.0.1 (DNS rebinding) cannot read the pages.
    assert client.get("/requests", headers={"host": "evil.example:8800"}).status_code == 421
    assert client.get("/requests", headers={"host": "localhost:8800"}).status_code == 200
    assert client.get("/requests", headers={"host": "[::1]:8800"}).status_code == 200
    refused = client.post(
        "/queues/orders-orders/dlq/purge",
        content="confirm=orders-orders",
        headers={
            "origin": "https://evil.example",
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert refused.status_code == 403
    assert client.get("/static/dashboard.css").status_code == 200
    assert client.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")


def test_the_address_is_loopback_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTFORGE_DASHBOARD_ADDR", raising=False)
    assert Settings().dashboard_url == "http://127.0.0.1:8800"
    assert Settings(dashboard_addr="[::1]:9000").dashboard_url == "http://[::1]:9000"
    assert Settings(dashboard_addr="").dashboard_url is None
    with pytest.raises(ValidationError, match="not a loopback address"):
        Settings(dashboard_addr="0.0.0.0:8800")
    with pytest.raises(ValidationError, match="not host:port"):
        Settings(dashboard_addr="8800")
    allowed = Settings(dashboard_addr="0.0.0.0:8800", dashboard_allow_remote=True)
    assert allowed.dashboard_url == "http://0.0.0.0:8800"


def test_up_points_metrics_at_the_dashboard_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_METRIC_EXPORT_INTERVAL",
    ):
        monkeypatch.delenv(name, raising=False)
    assert metrics_environment("http://127.0.0.1:8800") == {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:8800/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
    }
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert metrics_environment("http://127.0.0.1:8800") == {}

    port = free_port()
    with BackgroundServer(create_app(Settings()), "127.0.0.1", port):
        url, why = dashboard_url(Settings(dashboard_addr=f"127.0.0.1:{port}"))
    assert url is None
    assert "in use" in why
    assert dashboard_url(Settings(dashboard_addr=f"127.0.0.1:{port}")) == (
        f"http://127.0.0.1:{port}",
        "",
    )
    assert dashboard_url(Settings(dashboard_addr=""))[0] is None
