"""Deferred work continues its cause: child soon after, a linked new trace much later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventforge.runtime import deferred
from eventforge.runtime.context import current_request_id, request_context

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def cause_of(provider: TracerProvider) -> tuple[dict[str, str], ReadableSpan]:
    tracer = provider.get_tracer("test")
    with request_context("req-42"), tracer.start_as_current_span("event handled") as span:
        carrier = deferred.capture()
    assert isinstance(span, ReadableSpan)
    return carrier, span


def test_a_capture_holds_the_trace_and_the_request_id(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    carrier, cause = cause_of(spans[0])
    assert carrier["traceparent"].split("-")[1] == f"{cause.context.trace_id:032x}"
    assert deferred.request_id_of(carrier) == "req-42"
    assert deferred.request_id_of({}) is None


def test_work_soon_after_its_cause_is_a_child_on_the_same_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    carrier, cause = cause_of(provider)
    with deferred.resumed(
        provider.get_tracer("test"),
        "email send",
        carrier,
        caused_at=T0,
        now=T0 + timedelta(seconds=30),
    ):
        assert current_request_id() == "req-42"
    [work] = [s for s in exporter.get_finished_spans() if s.name == "email send"]
    assert work.context.trace_id == cause.context.trace_id
    assert work.parent is not None
    assert work.parent.span_id == cause.context.span_id
    assert work.attributes is not None
    assert work.attributes["request_id"] == "req-42"
    assert list(work.links) == []
    assert current_request_id() is None  # nothing leaks out of the block


def test_work_long_after_its_cause_starts_a_linked_trace_with_the_same_request_id(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    carrier, cause = cause_of(provider)
    with deferred.resumed(
        provider.get_tracer("test"),
        "webhook deliver",
        carrier,
        caused_at=T0,
        now=T0 + timedelta(hours=1),
    ):
        assert current_request_id() == "req-42"
    [work] = [s for s in exporter.get_finished_spans() if s.name == "webhook deliver"]
    assert work.context.trace_id != cause.context.trace_id
    assert work.parent is None
    [link] = work.links
    assert (link.context.trace_id, link.context.span_id) == (
        cause.context.trace_id,
        cause.context.span_id,
    )
    assert work.attributes is not None
    assert work.attributes["request_id"] == "req-42"


def test_work_without_a_stored_cause_is_a_root_without_a_request_id(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    with deferred.resumed(provider.get_tracer("test"), "email send", {}, caused_at=T0, now=T0):
        assert current_request_id() is None
    [work] = exporter.get_finished_spans()
    assert work.parent is None
    assert work.attributes is not None
    assert "request_id" not in work.attributes
