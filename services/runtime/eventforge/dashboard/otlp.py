"""OTLP/HTTP request bodies decoded into span-file records and metric points.

Both encodings of the OTLP/HTTP specification are accepted: binary protobuf
(`application/x-protobuf`) and JSON (`application/json`, where trace and span ids are hex
strings rather than protobuf JSON's base64), optionally gzip-compressed. Spans become the
records of the span file (`eventforge.runtime.telemetry.SpanRecord`), so that spans another
service exported and spans EventForge wrote are read by the same code.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

if TYPE_CHECKING:
    from eventforge.runtime.telemetry import SpanEvent, SpanLink, SpanRecord

REQUEST_ID_KEY = "request_id"
"""The span attribute of the request id (`eventforge.runtime.context.REQUEST_ID_KEY`)."""

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body accepted, compressed or not."""

_KINDS = {
    trace_pb2.Span.SPAN_KIND_UNSPECIFIED: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_UNSET: "UNSET",
    trace_pb2.Status.STATUS_CODE_OK: "OK",
    trace_pb2.Status.STATUS_CODE_ERROR: "ERROR",
}
_HEX_ID_KEYS = frozenset(("traceId", "spanId", "parentSpanId"))


class OtlpError(ValueError):
    """A body that is not an OTLP export request of the declared type and encoding."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    """`application/x-protobuf` or `application/json`; OtlpError (415) for anything else."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise OtlpError(f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}", 415)


def decompress(body: bytes, encoding: str | None) -> bytes:
    """The body without its `Content-Encoding` (gzip, deflate or none), at most MAX_BODY_BYTES."""
    kind = (encoding or "identity").strip().lower()
    if kind == "identity":
        return body
    if kind not in ("gzip", "deflate"):
        raise OtlpError(f"unsupported content encoding {encoding!r}", 415)
    wbits = 16 + zlib.MAX_WBITS if kind == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as error:
        raise OtlpError(f"body is not valid {kind}: {error}") from None
    if len(data) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise OtlpError(f"decompressed body is larger than {MAX_BODY_BYTES} bytes", 413)
    return data


def _parse(message: Message, body: bytes, kind: str) -> None:
    try:
        if kind == PROTOBUF:
            message.ParseFromString(body)
        else:
            document = json.loads(body)
            json_format.ParseDict(_ids_to_base64(document), message, ignore_unknown_fields=True)
    except (DecodeError, ValueError, json_format.ParseError) as error:
        raise OtlpError(f"not an OTLP {type(message).__name__}: {error}") from None


def _ids_to_base64(value: Any) -> Any:
    """OTLP JSON writes ids as hex; protobuf's JSON parser wants bytes as base64."""
    if isinstance(value, dict):
        return {
            key: _hex_to_base64(item) if key in _HEX_ID_KEYS else _ids_to_base64(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_ids_to_base64(item) for item in value]
    return value


def _hex_to_base64(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError:
        return value  # already base64, as a generic protobuf JSON encoder writes it


# --- traces ------------------------------------------------------------------------------------


def decode_traces(body: bytes, kind: str) -> list[SpanRecord]:
    """The spans of an ExportTraceServiceRequest, as span-file records."""
    request = ExportTraceServiceRequest()
    _parse(request, body, kind)
    records: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        service = resource.get("service.name")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for span in scope_spans.spans:
                records.append(_record(span, str(service) if service else None, scope))
    return records


def _record(span: trace_pb2.Span, service: str | None, scope: str | None) -> SpanRecord:
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise OtlpError(f"span {span.name!r} has no valid trace id and span id")
    attributes = attributes_of(span.attributes)
    request_id = attributes.get(REQUEST_ID_KEY)
    start, end = span.start_time_unix_nano, max(span.end_time_unix_nano, span.start_time_unix_nano)
    events: list[SpanEvent] = [
        {
            "name": event.name,
            "time_unix_nano": event.time_unix_nano,
            "attributes": attributes_of(event.attributes),
        }
        for event in span.events
    ]
    links: list[SpanLink] = [
        {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": attributes_of(link.attributes),
        }
        for link in span.links
    ]
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() if len(span.parent_span_id) == 8 else None,
        "name": span.name,
        "kind": _KINDS.get(span.kind, "INTERNAL"),
        "service": service,
        "scope": scope,
        "start_unix_nano": start,
        "end_unix_nano": end,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": {
            "code": _STATUS.get(span.status.code, "UNSET"),
            "description": span.status.message or None,
        },
        "attributes": attributes,
        "events": events,
        "links": links,
        "request_id": str(request_id) if request_id not in (None, "") else None,
    }


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as the span file writes attributes (str, bool, int, float, lists)."""
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return json.dumps(attributes_of(value.kvlist_value.values), default=str)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def traces_response(kind: str) -> tuple[bytes, str]:
    """An empty ExportTraceServiceResponse (full success) in the request's encoding."""
    return (b"{}", JSON) if kind == JSON else (b"", PROTOBUF)


# --- metrics -----------------------------------------------------------------------------------

MetricKind = Literal["gauge", "sum", "histogram"]


@dataclass(frozen=True)
class MetricPoint:
    """One data point of one series: a number, or a histogram's count and sum."""

    service: str
    name: str
    description: str
    unit: str
    kind: MetricKind
    attributes: tuple[tuple[str, str], ...]
    time_unix_nano: int
    value: float
    """The number (gauge, sum); for a histogram, its sum."""
    count: int = 0
    """For a histogram: observations in the point."""
    cumulative: bool = True
    monotonic: bool = False


def decode_metrics(body: bytes, kind: str) -> list[MetricPoint]:
    """The data points of an ExportMetricsServiceRequest."""
    request = ExportMetricsServiceRequest()
    _parse(request, body, kind)
    points: list[MetricPoint] = []
    for resource_metrics in request.resource_metrics:
        resource = attributes_of(resource_metrics.resource.attributes)
        service = str(resource.get("service.name") or "unknown")
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points += _points(service, metric)
    return points


def _points(service: str, metric: metrics_pb2.Metric) -> list[MetricPoint]:
    def point(
        attrs: Sequence[KeyValue],
        when: int,
        kind: MetricKind,
        value: float,
        count: int = 0,
        cumulative: bool = True,
        monotonic: bool = False,
    ) -> MetricPoint:
        return MetricPoint(
            service=service,
            name=metric.name,
            description=metric.description,
            unit=metric.unit,
            kind=kind,
            attributes=_series_key(attributes_of(attrs)),
            time_unix_nano=when,
            value=value,
            count=count,
            cumulative=cumulative,
            monotonic=monotonic,
        )

    which = metric.WhichOneof("data")
    delta = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    if which == "gauge":
        return [
            point(p.attributes, p.time_unix_nano, "gauge", _number(p))
            for p in metric.gauge.data_points
        ]
    if which == "sum":
        cumulative = metric.sum.aggregation_temporality != delta
        return [
            point(
                p.attributes,
                p.time_unix_nano,
                "sum",
                _number(p),
                cumulative=cumulative,
                monotonic=metric.sum.is_monotonic,
            )
            for p in metric.sum.data_points
        ]
    if which in ("histogram", "exponential_histogram"):
        data = metric.histogram if which == "histogram" else metric.exponential_histogram
        cumulative = data.aggregation_temporality != delta
        return [
            point(p.attributes, p.time_unix_nano, "histogram", p.sum, p.count, cumulative)
            for p in data.data_points
        ]
    if which == "summary":
        return [
            point(p.attributes, p.time_unix_nano, "histogram", p.sum, p.count)
            for p in metric.summary.data_points
        ]
    return []


def _number(point: metrics_pb2.NumberDataPoint) -> float:
    return float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double


def _series_key(attributes: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, str(value)) for key, value in attributes.items()))


def metrics_response(kind: str) -> tuple[bytes, str]:
    """An empty ExportMetricsServiceResponse (full success) in the request's encoding."""
    return traces_response(kind)
