"""OpenTelemetry for every EventForge process: OTLP export when configured, always a span file.

`configure_telemetry` builds the tracer provider and the meter provider of one process. The
standard `OTEL_*` variables configure them (sampler, limits, batching, OTLP endpoint, headers,
protocol, export interval, propagators); spans go to an OTLP collector only when
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and always to the
local span file (`Settings.spans_path`), so one request can be inspected without any collector.
Metrics (declared in `eventforge.runtime.metrics`) are exported only when
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is set (and
`OTEL_METRICS_EXPORTER` is not `none`), every `OTEL_METRIC_EXPORT_INTERVAL` ms (60 000), over
`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` or else `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (the
default) or `http/protobuf`.

OpenTelemetry lets a process set its global providers only once. Processes call
`configure_telemetry(service, settings)` once at start-up; tests pass `set_global=False`, which
touches no process-wide state (no global provider or propagator, no botocore patching), and
hand the returned `Telemetry.provider` (or `Telemetry.meter_provider`, with the
`metric_readers` they passed) to whatever they instrument.

Span file format: UTF-8 JSON lines, one object per finished span, appended by several processes
(each batch is one `os.write` of whole lines on an `O_APPEND` descriptor). Keys:

- `trace_id` (32 hex), `span_id` (16 hex), `parent_span_id` (16 hex or null)
- `name`; `kind`: INTERNAL, SERVER, CLIENT, PRODUCER or CONSUMER
- `service`: the resource's `service.name`; `scope`: the instrumentation scope name or null
- `start_unix_nano`, `end_unix_nano` (integers), `duration_ms` (float)
- `status`: `{"code": "UNSET" | "OK" | "ERROR", "description": str | null}`
- `attributes`: object of str, bool, int, float or lists of those
- `events`: list of `{"name", "time_unix_nano", "attributes"}`
- `links`: list of `{"trace_id", "span_id", "attributes"}`
- `request_id`: the span's `request_id` attribute (copied from baggage) or null

`span_to_record` writes a record and `read_span_file` reads them back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from opentelemetry import metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.environment_variables import OTEL_PROPAGATORS
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.processor.baggage import BaggageSpanProcessor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    import grpc  # type: ignore[import-untyped, unused-ignore]

from eventforge.runtime.context import REQUEST_ID_KEY
from eventforge.runtime.settings import Settings

log = logging.getLogger(__name__)

METRICS_SHUTDOWN_MILLIS = 3_000
"""At most this long for the last metrics export when a process stops."""


class SpanStatus(TypedDict):
    code: str
    description: str | None


class SpanEvent(TypedDict):
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


class SpanLink(TypedDict):
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


class SpanRecord(TypedDict):
    """One line of the span file."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str | None
    scope: str | None
    start_unix_nano: int
    end_unix_nano: int
    duration_ms: float
    status: SpanStatus
    attributes: dict[str, Any]
    events: list[SpanEvent]
    links: list[SpanLink]
    request_id: str | None


def span_to_record(span: ReadableSpan) -> SpanRecord:
    """The span-file record of one finished span."""
    context = span.get_span_context()
    if context is None:
        raise ValueError(f"span {span.name!r} has no span context")
    start = span.start_time or 0
    end = span.end_time or start
    attributes = _attributes(span.attributes)
    request_id = attributes.get(REQUEST_ID_KEY)
    service = span.resource.attributes.get(SERVICE_NAME)
    scope = span.instrumentation_scope
    return {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
        "parent_span_id": trace.format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": str(service) if service is not None else None,
        "scope": scope.name if scope else None,
        "start_unix_nano": start,
        "end_unix_nano": end,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": attributes,
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _attributes(e.attributes)}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": trace.format_trace_id(link.context.trace_id),
                "span_id": trace.format_span_id(link.context.span_id),
                "attributes": _attributes(link.attributes),
            }
            for link in span.links
        ],
        "request_id": str(request_id) if request_id is not None else None,
    }


def read_span_file(path: Path) -> list[SpanRecord]:
    """The records of a span file; a missing file has none, an unfinished last line is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    complete, _, _unfinished = text.rpartition("\n")
    return [cast(SpanRecord, json.loads(line)) for line in complete.splitlines() if line]


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in (attributes or {}).items()}


_AS_IS = frozenset((str, int, bool))


def _json_value(value: Any) -> Any:
    # Exact types first: nearly every attribute is a str or an int, and the Sequence check
    # below (an ABC) is what made serialising a span slow.
    if type(value) in _AS_IS:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # strict JSON rejects NaN, Infinity
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_json_value(item) for item in value]
    return value


class SpanFileExporter(SpanExporter):
    """Appends finished spans to a JSON-lines file that several processes share."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        lines = [json.dumps(span_to_record(s), separators=(",", ":")) + "\n" for s in spans]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Opened per batch so a removed or rotated file is recreated, not written unlinked.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _write_all(fd, "".join(lines).encode("utf-8"))
            finally:
                os.close(fd)
        except OSError:
            log.exception("cannot append %d spans to %s", len(spans), self.path)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def _write_all(fd: int, data: bytes) -> None:
    # One write keeps other processes' lines out of this batch; looping only matters on a short
    # write (a full disk, a signal), where finishing the tail beats losing it.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Telemetry:
    """The tracer and meter providers of one process and the tracer for its manual spans."""

    def __init__(
        self,
        provider: TracerProvider,
        tracer: trace.Tracer,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.provider = provider
        self.tracer = tracer
        self.meter_provider = meter_provider or MeterProvider(
            resource=provider.resource, shutdown_on_exit=False
        )
        self._lock = threading.Lock()
        self._shut_down = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span and the metrics now; False if the timeout passed first."""
        spans = self.provider.force_flush(timeout_millis)
        return self.meter_provider.force_flush(timeout_millis) and spans

    def shutdown(self) -> None:
        """Flush and stop every exporter (spans, then a last metrics export); later calls do
        nothing."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        self.provider.shutdown()
        # Bounded: with its endpoint gone, the exporter would retry for its whole timeout and
        # hold the process past its stop grace; the last export is then given up.
        self.meter_provider.shutdown(timeout_millis=METRICS_SHUTDOWN_MILLIS)


def configure_telemetry(
    service: str,
    settings: Settings,
    *,
    set_global: bool = True,
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Tracing and metrics for one process of `service`; `set_global=False` leaves process
    state alone. `metric_readers` are added to the OTLP one the environment may configure."""
    resource = service_resource(service)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BaggageSpanProcessor(lambda key: key == REQUEST_ID_KEY))
    if settings.span_file_enabled:
        provider.add_span_processor(
            BatchSpanProcessor(SpanFileExporter(settings.spans_path.absolute()))
        )
    if os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT) or os.environ.get(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ):
        # Imported here: with grpc, it would weigh on every process that exports no spans.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Shut down by Telemetry.shutdown, not at exit: the SDK warns about a second shutdown.
    meter_provider = MeterProvider(
        metric_readers=[*metric_readers, *otlp_metric_readers()],
        resource=resource,
        shutdown_on_exit=False,
    )
    if set_global:
        _install_globally(provider, meter_provider)
    return Telemetry(
        provider, provider.get_tracer(f"eventforge.{service}", _version()), meter_provider
    )


OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
OTLP_PROTOCOLS = ("grpc", "http/protobuf")


def otlp_metric_readers() -> list[MetricReader]:
    """The periodic OTLP reader the standard variables ask for: none without an endpoint.

    The exporter reads its endpoint, headers, TLS, compression and timeout from the
    `OTEL_EXPORTER_OTLP_[METRICS_]*` variables, and the reader its interval
    (`OTEL_METRIC_EXPORT_INTERVAL`) and timeout, as the SDK documents them.
    """
    if os.environ.get(OTEL_METRICS_EXPORTER, "").strip().lower() == "none":
        return []
    if not (
        os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT)
        or os.environ.get(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)
    ):
        return []
    return [PeriodicExportingMetricReader(otlp_metric_exporter())]


def otlp_metric_exporter() -> MetricExporter:
    """The OTLP metric exporter of the configured protocol, as the SDK's own configurator
    picks it: the metrics variable, then the general one, then `grpc`; any other value fails."""
    protocol = (
        os.environ.get(OTEL_EXPORTER_OTLP_METRICS_PROTOCOL)
        or os.environ.get(OTEL_EXPORTER_OTLP_PROTOCOL)
        or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        return HttpMetricExporter()
    raise ValueError(
        f"unsupported OTLP metrics protocol {protocol!r}: use one of {', '.join(OTLP_PROTOCOLS)}"
    )


def service_resource(service: str) -> Resource:
    """Our resource attributes, overridden by `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`."""
    ours = Resource.create(
        {
            "service.name": f"eventforge-{service}",
            "service.namespace": "eventforge",
            "service.version": _version(),
        }
    )
    # Resource.create lets code attributes win over the environment; operators expect the reverse.
    return ours.merge(OTELResourceDetector().detect())


def _version() -> str:
    try:
        return metadata.version("eventforge")
    except metadata.PackageNotFoundError:
        return "unknown"


def _install_globally(provider: TracerProvider, meter_provider: MeterProvider) -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        raise RuntimeError("the global tracer provider is already set in this process")
    trace.set_tracer_provider(provider)
    # Instruments made before this (`metrics.process_metrics()`) are proxies that follow it.
    metrics.set_meter_provider(meter_provider)
    if not os.environ.get(OTEL_PROPAGATORS):
        propagate.set_global_textmap(
            CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        )
    botocore = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
    if not botocore.is_instrumented_by_opentelemetry:
        botocore.instrument(tracer_provider=provider)


_traced_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_engines_lock = threading.Lock()


def instrument_engine(
    engine: Engine, *, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """Trace the statements of `engine`; call while wiring, before it serves traffic.

    SQLAlchemyInstrumentor is a process-wide singleton that ignores a second `instrument`
    call, so each new engine re-instruments every engine registered so far (with the
    latest `tracer_provider`; None means the global one).
    """
    with _engines_lock:
        instrumentor = SQLAlchemyInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            if engine in _traced_engines:
                return
            instrumentor.uninstrument()
        _traced_engines.add(engine)
        instrumentor.instrument(
            engines=list(_traced_engines),
            tracer_provider=tracer_provider,
            enable_commenter=False,
        )


def grpc_client_interceptor(*, tracer_provider: trace.TracerProvider | None = None) -> Any:
    """The OpenTelemetry client interceptor, for `grpcext.intercept_channel` only.

    It is not a `grpc.*ClientInterceptor`: `grpc.intercept_channel` rejects it with a
    TypeError. Use `instrument_channel`. Imported on first use: processes without a gRPC client
    (ingest, the scheduler) never load grpc.
    """
    from opentelemetry.instrumentation.grpc import client_interceptor

    return client_interceptor(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]


def instrument_channel(
    channel: grpc.Channel, *, tracer_provider: trace.TracerProvider | None = None
) -> grpc.Channel:
    """`channel` with a client span per call and the trace context and baggage in its metadata."""
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    interceptor = grpc_client_interceptor(tracer_provider=tracer_provider)
    traced: grpc.Channel = intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]
    return traced
