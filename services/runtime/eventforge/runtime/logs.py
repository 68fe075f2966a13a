"""JSON log lines that carry the service, trace id, span id and request id of their context."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from eventforge.runtime.context import current_request_id

NOISY_LOGGERS = ("alembic", "botocore", "boto3", "s3transfer", "urllib3", "werkzeug")


class ContextJsonFormatter(JsonFormatter):
    """One JSON object per record: fixed fields first, then `extra=` fields and the exception."""

    def __init__(self, service: str) -> None:
        super().__init__("%(message)s", rename_fields={"exc_info": "exception"})
        self.service = service

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        span_context = trace.get_current_span().get_span_context()
        valid = span_context.is_valid
        log_data["timestamp"] = (
            datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        log_data["level"] = record.levelname
        log_data["service"] = self.service
        log_data["logger"] = record.name
        log_data["message"] = record.message  # set by JsonFormatter.format
        log_data["trace_id"] = trace.format_trace_id(span_context.trace_id) if valid else None
        log_data["span_id"] = trace.format_span_id(span_context.span_id) if valid else None
        log_data["request_id"] = current_request_id()
        # After ours, so an explicit `extra=` value (a worker's request id, say) wins.
        super().add_fields(log_data, record, message_dict)


class _EventForgeHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler that `configure_logging` owns, so a second call replaces it."""


def configure_logging(service: str, level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) as a JSON line; calling again replaces it."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _EventForgeHandler)]:
        root.removeHandler(handler)
        handler.close()
    handler = _EventForgeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(ContextJsonFormatter(f"eventforge-{service}"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
