"""Telemetry: the span file, OTLP export to a real receiver, propagation and instrumentation.

OpenTelemetry sets a process's global tracer provider only once, so these tests configure with
`set_global=False` and pass the returned provider on; the global wiring is checked in a child
process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped, unused-ignore]
import grpc.aio
import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import create_engine, text

from eventforge.runtime.context import current_request_id, request_context
from eventforge.runtime.grpc.interceptor import CallInterceptor
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import (
    SpanRecord,
    Telemetry,
    configure_telemetry,
    instrument_channel,
    instrument_engine,
    read_span_file,
)
from tests.fixtures.otlp import OtlpReceiver

OTLP_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def _clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTLP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, span_file=tmp_path / "nested" / "spans.jsonl")


@pytest.fixture
def telemetry(settings: Settings) -> Iterator[Telemetry]:
    configured = configure_telemetry("orders", settings, set_global=False)
    yield configured
    configured.shutdown()


def spans_by_name(telemetry: Telemetry, settings: Settings) -> dict[str, SpanRecord]:
    assert telemetry.force_flush()
    return {record["name"]: record for record in read_span_file(settings.spans_path)}


def test_spans_of_a_request_carry_its_id_and_parent_links(
    telemetry: Telemetry, settings: Settings
) -> None:
    tracer = telemetry.tracer
    with request_context("abc"), tracer.start_as_current_span("root") as root:
        with (
            tracer.start_as_current_span("child", kind=trace.SpanKind.PRODUCER),
            tracer.start_as_current_span("grandchild"),
        ):
            pass
        root.set_attribute("eventforge.order_id", "o-1")

    spans = spans_by_name(telemetry, settings)

    assert set(spans) == {"root", "child", "grandchild"}
    assert {s["request_id"] for s in spans.values()} == {"abc"}
    assert {s["attributes"]["request_id"] for s in spans.values()} == {"abc"}
    assert len({s["trace_id"] for s in spans.values()}) == 1
    assert spans["root"]["parent_span_id"] is None
    assert spans["child"]["parent_span_id"] == spans["root"]["span_id"]
    assert spans["grandchild"]["parent_span_id"] == spans["child"]["span_id"]
    assert spans["child"]["kind"] == "PRODUCER"
    assert spans["root"]["service"] == "eventforge-orders"
    assert spans["root"]["attributes"]["eventforge.order_id"] == "o-1"
    assert spans["root"]["trace_id"] == trace.format_trace_id(root.get_span_context().trace_id)


def test_a_span_outside_a_request_has_no_request_id(
    telemetry: Telemetry, settings: Settings
) -> None:
    with telemetry.tracer.start_as_current_span("background"):
        pass

    assert spans_by_name(telemetry, settings)["background"]["request_id"] is None


def test_the_record_keeps_status_events_links_and_timing(
    telemetry: Telemetry, settings: Settings
) -> None:
    tracer = telemetry.tracer
    with tracer.start_as_current_span("earlier") as earlier:
        pass
    with tracer.start_as_current_span(
        "failing", links=[trace.Link(earlier.get_span_context(), {"why": "batch"})]
    ) as span:
        span.add_event("retry", {"attempt": 2, "codes": ("a", "b")})
        span.set_status(trace.StatusCode.ERROR, "payment declined")

    record = spans_by_name(telemetry, settings)["failing"]

    assert record["status"] == {"code": "ERROR", "description": "payment declined"}
    [event] = record["events"]
    assert event["name"] == "retry"
    assert event["attributes"] == {"attempt": 2, "codes": ["a", "b"]}
    assert record["start_unix_nano"] <= event["time_unix_nano"] <= record["end_unix_nano"]
    assert record["links"] == [
        {
            "trace_id": trace.format_trace_id(earlier.get_span_context().trace_id),
            "span_id": trace.format_span_id(earlier.get_span_context().span_id),
            "attributes": {"why": "batch"},
        }
    ]
    elapsed = record["end_unix_nano"] - record["start_unix_nano"]
    assert record["duration_ms"] == pytest.approx(elapsed / 1e6, abs=1e-3)
    assert record["kind"] == "INTERNAL"
    assert record["scope"] == "eventforge.orders"


def test_processes_sharing_the_span_file_append_whole_lines(settings: Settings) -> None:
    writers = [configure_telemetry(s, settings, set_global=False) for s in ("orders", "files")]

    def write_spans(telemetry: Telemetry) -> None:
        for index in range(300):
            with telemetry.tracer.start_as_current_span(f"span-{index}") as span:
                span.set_attribute("padding", "x" * 200)

    threads = [threading.Thread(target=write_spans, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.shutdown()
        writer.shutdown()  # idempotent

    records = read_span_file(settings.spans_path)
    assert len(records) == 600
    assert {r["service"] for r in records} == {"eventforge-orders", "eventforge-files"}


def test_reading_skips_an_unfinished_last_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    assert read_span_file(path) == []
    path.write_text('{"name": "done"}\n{"name": "half', encoding="utf-8")

    assert [r["name"] for r in read_span_file(path)] == ["done"]


def test_the_environment_overrides_and_extends_the_resource(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-canary")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    telemetry = configure_telemetry("orders", settings, set_global=False)
    try:
        attributes = telemetry.provider.resource.attributes
        assert attributes["service.name"] == "orders-canary"
        assert attributes["service.namespace"] == "eventforge"
        assert attributes["deployment.environment"] == "staging"
    finally:
        telemetry.shutdown()


@pytest.fixture
def otlp_environment(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    return otlp_receiver


def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    otlp_environment: OtlpReceiver, settings: Settings
) -> None:
    telemetry = configure_telemetry("files", settings, set_global=False)
    try:
        with request_context("req-otlp"), telemetry.tracer.start_as_current_span("upload") as span:
            trace_id = span.get_span_context().trace_id
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()

    received = [
        (resource_spans.resource, otlp_span)
        for request in otlp_environment.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for otlp_span in scope_spans.spans
    ]
    [(resource, otlp_span)] = received
    resource_attributes = {a.key: a.value.string_value for a in resource.attributes}
    span_attributes = {a.key: a.value.string_value for a in otlp_span.attributes}
    assert resource_attributes["service.name"] == "eventforge-files"
    assert span_attributes["request_id"] == "req-otlp"
    assert otlp_span.name == "upload"
    assert int.from_bytes(otlp_span.trace_id, "big") == trace_id
    assert [r["name"] for r in read_span_file(settings.spans_path)] == ["upload"]


def test_without_the_span_file_spans_go_only_to_otlp(
    otlp_environment: OtlpReceiver, settings: Settings
) -> None:
    settings = settings.model_copy(update={"span_file_enabled": False})
    telemetry = configure_telemetry("orders", settings, set_global=False)
    try:
        with telemetry.tracer.start_as_current_span("place"):
            pass
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    names = [
        otlp_span.name
        for request in otlp_environment.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for otlp_span in scope_spans.spans
    ]
    assert names == ["place"]
    assert not settings.spans_path.exists()


def test_context_injected_in_one_context_is_extracted_in_a_fresh_one(
    telemetry: Telemetry,
) -> None:
    carrier: dict[str, str] = {}
    with request_context("abc"), telemetry.tracer.start_as_current_span("publish") as span:
        propagate.inject(carrier)
        sent = span.get_span_context()

    assert "traceparent" in carrier
    assert "baggage" in carrier
    token = context.attach(propagate.extract(carrier, context=context.Context()))
    try:
        received = trace.get_current_span().get_span_context()
        assert received.trace_id == sent.trace_id
        assert received.span_id == sent.span_id
        assert received.is_remote
        assert current_request_id() == "abc"
    finally:
        context.detach(token)


def test_a_grpc_call_links_client_and_server_spans_and_carries_the_request_id(
    telemetry: Telemetry, settings: Settings
) -> None:
    seen: list[str | None] = []

    def echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
        seen.append(current_request_id())
        return request

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=[CallInterceptor(tracer_provider=telemetry.provider)])
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("test.Echo", {"Say": handler})]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    # The server on an event loop of its own, as the runtime runs it; `echo` is a plain
    # function, so it runs in a worker thread, with the call's context.
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        with instrument_channel(
            grpc.insecure_channel(f"127.0.0.1:{port}"), tracer_provider=telemetry.provider
        ) as channel:
            say: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Echo/Say")
            with request_context("abc"):
                assert say(b"hi", timeout=5) == b"hi"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(grace=None), loop).result()
        loop.call_soon_threadsafe(loop.stop)

    assert telemetry.force_flush()
    spans = read_span_file(settings.spans_path)
    [client] = [s for s in spans if s["kind"] == "CLIENT"]
    [served] = [s for s in spans if s["kind"] == "SERVER"]
    assert seen == ["abc"]
    assert served["trace_id"] == client["trace_id"]
    assert served["parent_span_id"] == client["span_id"]
    assert client["request_id"] == served["request_id"] == "abc"


def test_instrument_engine_traces_every_engine(telemetry: Telemetry, settings: Settings) -> None:
    first, second = create_engine("sqlite://"), create_engine("sqlite://")
    try:
        instrument_engine(first, tracer_provider=telemetry.provider)
        instrument_engine(second, tracer_provider=telemetry.provider)
        instrument_engine(second, tracer_provider=telemetry.provider)
        with request_context("db"), telemetry.tracer.start_as_current_span("unit-of-work"):
            for engine, statement in ((first, "SELECT 1"), (second, "SELECT 2")):
                with engine.connect() as connection:
                    connection.execute(text(statement))
    finally:
        SQLAlchemyInstrumentor().uninstrument()

    assert telemetry.force_flush()
    records = read_span_file(settings.spans_path)
    [unit_of_work] = [r for r in records if r["name"] == "unit-of-work"]
    queries = [r for r in records if r["name"] == "SELECT"]
    assert [q["attributes"]["db.statement"] for q in queries] == ["SELECT 1", "SELECT 2"]
    assert {q["parent_span_id"] for q in queries} == {unit_of_work["span_id"]}
    assert {r["request_id"] for r in records} == {"db"}


GLOBAL_WIRING = """
import asyncio
import json
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from eventforge.runtime.context import request_context
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import configure_telemetry

settings = Settings()
telemetry = configure_telemetry("notifier", settings)
try:
    configure_telemetry("notifier", settings)
    second = "allowed"
except RuntimeError:
    second = "refused"
carrier = {}
with request_context("global"), trace.get_tracer("t").start_as_current_span("s"):
    propagate.inject(carrier)
telemetry.shutdown()
telemetry.shutdown()
print(json.dumps({
    "global": trace.get_tracer_provider() is telemetry.provider,
    "fields": sorted(propagate.get_global_textmap().fields),
    "carrier": sorted(carrier),
    "botocore": BotocoreInstrumentor().is_instrumented_by_opentelemetry,
    "second": second,
}))
"""


def test_configure_telemetry_wires_the_process_globals(settings: Settings) -> None:
    environment = {
        **{k: v for k, v in os.environ.items() if k not in OTLP_VARIABLES},
        "EVENTFORGE_SPAN_FILE": str(settings.spans_path),
    }
    environment.pop("OTEL_PROPAGATORS", None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GLOBAL_WIRING)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    report = json.loads(result.stdout)
    assert report == {
        "global": True,
        "fields": ["baggage", "traceparent", "tracestate"],
        "carrier": ["baggage", "traceparent"],
        "botocore": True,
        "second": "refused",
    }
    [record] = read_span_file(settings.spans_path)
    assert record["service"] == "eventforge-notifier"
    assert record["request_id"] == "global"
