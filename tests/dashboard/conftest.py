"""Fixtures of the dashboard's tests: span-file records, a test client, Chromium."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eventforge.dashboard.app import create_app
from eventforge.runtime.emulator import free_port
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import SpanEvent, SpanRecord

CHROMIUM = os.environ.get("EVENTFORGE_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
"""Screenshots of the browser tests (git-ignored)."""
BASE_URL = "http://127.0.0.1:8800"
"""What the test client sends as Host: the dashboard answers loopback host names only."""
T0 = 1_796_000_000_000_000_000


def span(
    trace: str,
    span_id: str,
    name: str,
    *,
    service: str = "orders",
    parent: str | None = None,
    kind: str = "INTERNAL",
    start_ms: float = 0.0,
    duration_ms: float = 1.0,
    request_id: str | None = "req-1",
    error: str | None = None,
    attributes: dict[str, Any] | None = None,
    events: list[SpanEvent] | None = None,
    links: list[tuple[str, str]] | None = None,
) -> SpanRecord:
    """One span-file record (the format of `eventforge.runtime.telemetry`)."""
    start = T0 + int(start_ms * 1e6)
    end = start + int(duration_ms * 1e6)
    attrs = dict(attributes or {})
    if request_id is not None:
        attrs["request_id"] = request_id
    return {
        "trace_id": trace.ljust(32, "0"),
        "span_id": span_id.ljust(16, "0"),
        "parent_span_id": parent.ljust(16, "0") if parent else None,
        "name": name,
        "kind": kind,
        "service": f"eventforge-{service}"
        if service in ("orders", "files", "notifier")
        else service,
        "scope": "test",
        "start_unix_nano": start,
        "end_unix_nano": end,
        "duration_ms": duration_ms,
        "status": {"code": "ERROR" if error else "UNSET", "description": error},
        "attributes": attrs,
        "events": events or [],
        "links": [
            {"trace_id": t.ljust(32, "0"), "span_id": s.ljust(16, "0"), "attributes": {}}
            for t, s in links or []
        ],
        "request_id": request_id,
    }


def order_trace(
    trace: str = "a1", request_id: str = "req-1", order_id: str = "ord-1"
) -> list[SpanRecord]:
    """A CreateOrder across the three services: gRPC, events, the saga (whose payment call
    failed once), the receipt's GetOrder, an email."""
    r = request_id
    rpc = "eventforge.orders.v1.OrdersService"
    placed = {"eventforge.event_type": "order.placed", "eventforge.event_id": "ev-placed"}
    confirmed = {"eventforge.event_type": "order.confirmed", "eventforge.event_id": "ev-confirmed"}
    order = {"eventforge.order_id": order_id}
    return [
        span(
            trace,
            "01",
            f"/{rpc}/CreateOrder",
            kind="SERVER",
            duration_ms=12,
            request_id=r,
            attributes={"rpc.service": rpc, "rpc.method": "CreateOrder"},
        ),
        span(
            trace,
            "02",
            "INSERT orders",
            kind="CLIENT",
            parent="01",
            start_ms=2,
            duration_ms=3,
            request_id=r,
            attributes={"db.statement": "INSERT INTO orders"},
        ),
        span(
            trace,
            "03",
            "eventforge-orders-events publish",
            kind="PRODUCER",
            parent="01",
            start_ms=20,
            duration_ms=5,
            request_id=r,
            attributes=placed,
        ),
        span(
            trace,
            "04",
            "eventforge-orders-orders process",
            kind="CONSUMER",
            parent="03",
            start_ms=40,
            duration_ms=100,
            request_id=r,
            links=[(trace, "03")],
            attributes={**placed, "messaging.destination.name": "eventforge-orders-orders"},
        ),
        span(
            trace,
            "05",
            "saga reserve_inventory",
            parent="04",
            start_ms=42,
            duration_ms=20,
            request_id=r,
            attributes=order,
        ),
        span(
            trace,
            "06",
            "saga charge_payment",
            parent="04",
            start_ms=65,
            duration_ms=30,
            request_id=r,
            attributes=order,
            events=[
                {"name": "retry", "time_unix_nano": T0 + 70_000_000, "attributes": {"attempt": 2}}
            ],
        ),
        span(
            trace,
            "0e",
            "POST /charges",
            kind="CLIENT",
            parent="06",
            start_ms=66,
            duration_ms=3,
            request_id=r,
            error="503 Service Unavailable",
        ),
        span(trace, "07", "saga confirm", parent="04", start_ms=100, duration_ms=10, request_id=r),
        span(
            trace,
            "08",
            "eventforge-orders-events publish",
            kind="PRODUCER",
            parent="07",
            start_ms=120,
            duration_ms=4,
            request_id=r,
            attributes=confirmed,
        ),
        span(
            trace,
            "09",
            "eventforge-files-orders process",
            service="files",
            kind="CONSUMER",
            parent="08",
            start_ms=150,
            duration_ms=30,
            request_id=r,
            attributes=confirmed,
        ),
        span(
            trace,
            "0a",
            f"/{rpc}/GetOrder",
            service="files",
            kind="CLIENT",
            parent="09",
            start_ms=155,
            duration_ms=6,
            request_id=r,
        ),
        span(
            trace,
            "0b",
            f"/{rpc}/GetOrder",
            kind="SERVER",
            parent="0a",
            start_ms=156,
            duration_ms=4,
            request_id=r,
            attributes={"rpc.service": rpc, "rpc.method": "GetOrder"},
        ),
        span(
            trace,
            "0c",
            "eventforge-notifier-orders process",
            service="notifier",
            kind="CONSUMER",
            parent="08",
            start_ms=160,
            duration_ms=25,
            request_id=r,
            attributes=confirmed,
        ),
        span(
            trace,
            "0d",
            "email send",
            service="notifier",
            parent="0c",
            start_ms=190,
            duration_ms=8,
            request_id=r,
            attributes={"eventforge.event_id": "ev-confirmed"},
        ),
    ]


def write_spans(path: Path, records: list[SpanRecord], *, unfinished: str = "") -> None:
    """Append records as the span file's lines (and an unfinished last line, if given)."""
    with path.open("a", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, separators=(",", ":")) + "\n")
        file.write(unfinished)


@pytest.fixture
def dashboard_settings(tmp_path: Path) -> Settings:
    """Settings of a stack that is not running: nothing listens on its addresses."""
    dead = [free_port() for _ in range(5)]
    return Settings(
        data_dir=tmp_path,
        aws_endpoint_url=f"http://127.0.0.1:{dead[0]}",
        orders_addr=f"127.0.0.1:{dead[1]}",
        files_addr=f"127.0.0.1:{dead[2]}",
        notifier_addr=f"127.0.0.1:{dead[3]}",
        ingest_addr=f"127.0.0.1:{dead[4]}",
    )


@pytest.fixture
def client(dashboard_settings: Settings) -> Iterator[TestClient]:
    """The dashboard of `dashboard_settings`, in process."""
    with TestClient(create_app(dashboard_settings), base_url=BASE_URL) as test_client:
        yield test_client
