"""JSON log lines: fixed fields, trace and request correlation, extras, exceptions, idempotence."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from eventforge.runtime.context import request_context
from eventforge.runtime.logs import NOISY_LOGGERS, configure_logging
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import configure_telemetry

log = logging.getLogger("eventforge.orders.test")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.fixture
def stream() -> io.StringIO:
    output = io.StringIO()
    configure_logging("orders", "INFO", stream=output)
    return output


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_in_a_span_and_a_request_carries_the_correlation_fields(
    stream: io.StringIO, tmp_path: Path
) -> None:
    telemetry = configure_telemetry("orders", Settings(data_dir=tmp_path), set_global=False)
    try:
        with request_context("abc"), telemetry.tracer.start_as_current_span("place") as span:
            log.info("order %s placed", "o-1", extra={"order_id": "o-1", "items": 2})
            span_context = span.get_span_context()
    finally:
        telemetry.shutdown()

    [line] = lines(stream)
    assert line == {
        "timestamp": line["timestamp"],
        "level": "INFO",
        "service": "eventforge-orders",
        "logger": "eventforge.orders.test",
        "message": "order o-1 placed",
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
        "request_id": "abc",
        "order_id": "o-1",
        "items": 2,
    }
    assert list(line)[:8] == [
        "timestamp",
        "level",
        "service",
        "logger",
        "message",
        "trace_id",
        "span_id",
        "request_id",
    ]
    assert line["timestamp"].endswith("Z")
    stamped = datetime.fromisoformat(line["timestamp"])
    assert stamped.tzinfo is not None
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60


def test_a_line_outside_any_span_or_request_has_null_correlation(stream: io.StringIO) -> None:
    log.warning("idle")

    [line] = lines(stream)
    assert (line["trace_id"], line["span_id"], line["request_id"]) == (None, None, None)
    assert line["level"] == "WARNING"


def test_an_exception_is_logged_with_its_traceback(stream: io.StringIO) -> None:
    try:
        raise ValueError("bad payment token")
    except ValueError:
        log.exception("charge failed")

    [line] = lines(stream)
    assert line["level"] == "ERROR"
    assert line["message"] == "charge failed"
    assert "Traceback" in line["exception"]
    assert "ValueError: bad payment token" in line["exception"]


def test_configuring_twice_replaces_the_handler(stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging("files", "DEBUG", stream=second)
    log.debug("once")

    assert stream.getvalue() == ""
    [line] = lines(second)
    assert (line["service"], line["message"]) == ("eventforge-files", "once")


def test_the_level_applies_and_noisy_libraries_are_quieted(stream: io.StringIO) -> None:
    log.debug("hidden")
    logging.getLogger("botocore.endpoint").info("chatter")
    logging.getLogger("urllib3.connectionpool").warning("retrying")

    assert [line["message"] for line in lines(stream)] == ["retrying"]
    assert all(logging.getLogger(n).level == logging.WARNING for n in NOISY_LOGGERS)


def test_logs_go_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("notifier")
    log.info("to stderr")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err.splitlines()[-1])["message"] == "to stderr"
