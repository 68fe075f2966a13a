"""Every EventForge metric, declared once: names, units, attributes and how each is recorded.

`configure_telemetry` (telemetry.py) builds the process's meter provider and exports with OTLP
when the standard variables name an endpoint. The instruments live on a `Metrics` object:
`process_metrics()` is the process's own, on the global meter provider (built on first use,
never at import time: until the provider is set its instruments are the API's proxies, which
start recording once it is); tests build `Metrics(provider)` on a provider of their own (an
`InMemoryMetricReader`'s) and hand it to what they exercise.

Names and units follow the OpenTelemetry semantic conventions where one exists:

- `rpc.server.duration` (histogram, ms; `rpc.system` grpc, `rpc.service`, `rpc.method`,
  `rpc.grpc.status_code`): every call a gRPC server answers, recorded by its access-log
  interceptor. `rpc.client.duration` (the same): every call of a channel built by
  `eventforge.runtime.grpc.client.channel`. (opentelemetry-instrumentation-grpc records spans
  only, so nothing is counted twice.)
- `messaging.client.consumed.messages` (counter, {message}) and `messaging.process.duration`
  (histogram, s), with `messaging.system` aws_sqs, `messaging.destination.name` (the physical
  queue), `messaging.operation.name` process, `eventforge.outcome` (processed, duplicate,
  ignored, failed, unparseable) and `error.type` when it failed: once per delivered message,
  by `MessageProcessor` (the worker and the Lambda consumer).
- `eventforge.messaging.dead_lettered` (counter, {message}; `messaging.system`,
  `messaging.destination.name`): a message that failed on its last receive, which the queue's
  redrive policy moves to the DLQ; counted by the queue poller.
- `eventforge.queue.depth` (gauge, {message}; the queue's attributes and
  `eventforge.queue.state` visible, in_flight or delayed): sampled by the queue poller every
  `QUEUE_SAMPLE_SECONDS`. `eventforge.queue.oldest_age` (gauge, s): the age of the oldest
  message of the poller's latest receive (0 when it received none); no SQS call of its own.
- `eventforge.outbox.backlog` (gauge, {row}) and `eventforge.outbox.oldest_age` (gauge, s),
  with `eventforge.service`: the relay's unpublished rows and the age of the oldest, sampled
  every `OUTBOX_SAMPLE_SECONDS` and each time it logs its backlog.
- `eventforge.saga.outcomes` (counter, {order}; `eventforge.saga.outcome` CONFIRMED, FAILED,
  CANCELLED or COMPENSATION_FAILED): the saga moved an order to a terminal status.
  `eventforge.saga.step.duration` (histogram, s; `eventforge.saga.step`): one run of a step.
- `eventforge.notifier.deliveries` (counter, {delivery}; `eventforge.notifier.channel` email or
  webhook, `eventforge.notifier.outcome`, `eventforge.notifier.attempt`): every attempt the
  notifier's dispatcher makes.

No attribute holds an id: every attribute has a small, fixed set of values.

The gauges report the latest sample their owner took (`Latest`); owners sample only once a
reader has collected the gauge (`Latest.observed`), so a process that exports no metrics makes
no extra database or SQS call for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

if TYPE_CHECKING:
    import grpc

METER_NAME = "eventforge"

MILLISECOND_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 10000)
"""Boundaries of the RPC histograms (ms): the SDK's default starts at 5 ms, too coarse here."""
SECOND_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    30,
    60,
)
"""Boundaries of the histograms in seconds: the semantic conventions' advice, plus 30 and 60."""

OUTBOX_SAMPLE_SECONDS = 15.0
"""How often a relay counts its backlog for the gauges (one query), while they are collected."""
QUEUE_SAMPLE_SECONDS = 60.0
"""How often a poller asks SQS for its queue's depth (one GetQueueAttributes), while collected."""

SQS = "aws_sqs"
_RPC_CACHE_LIMIT = 4096

Attributes = Mapping[str, str | int]


def _gauge(meter: Meter, name: str, *, unit: str, description: str) -> Latest:
    """An observable gauge reporting the latest values set on what it returns."""
    latest = Latest()
    meter.create_observable_gauge(
        name, callbacks=[latest.observe], unit=unit, description=description
    )
    return latest


class Latest:
    """The latest value of each attribute set: what one observable gauge reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[tuple[str, str | int], ...], float] = {}
        self.observed = False
        """A reader has collected the gauge: worth sampling for."""

    def set(self, value: float, attributes: Attributes | None = None) -> None:
        key = tuple(sorted((attributes or {}).items()))
        with self._lock:
            self._values[key] = value

    def values(self) -> dict[tuple[tuple[str, str | int], ...], float]:
        """The current values by sorted attribute items (for tests and callbacks)."""
        with self._lock:
            return dict(self._values)

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The gauge's callback."""
        del options
        self.observed = True
        return [Observation(value, dict(key)) for key, value in self.values().items()]


class Metrics:
    """The instruments of one meter provider, and how the code records into them."""

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter = (provider or metrics.get_meter_provider()).get_meter(METER_NAME, _version())
        self.rpc_server_duration = meter.create_histogram(
            "rpc.server.duration",
            unit="ms",
            description="Duration of inbound gRPC calls.",
            explicit_bucket_boundaries_advisory=MILLISECOND_BUCKETS,
        )
        self.rpc_client_duration = meter.create_histogram(
            "rpc.client.duration",
            unit="ms",
            description="Duration of outbound gRPC calls.",
            explicit_bucket_boundaries_advisory=MILLISECOND_BUCKETS,
        )
        self.consumed_messages = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages delivered to the application, by queue and outcome.",
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of processing one delivered message.",
            explicit_bucket_boundaries_advisory=SECOND_BUCKETS,
        )
        self.dead_lettered = meter.create_counter(
            "eventforge.messaging.dead_lettered",
            unit="{message}",
            description="Messages that failed on their last receive: the queue's redrive "
            "policy moves them to its DLQ.",
        )
        self.queue_depth = _gauge(
            meter,
            "eventforge.queue.depth",
            unit="{message}",
            description="Messages in a consumed queue (visible, in flight, delayed), as its "
            "worker last sampled them.",
        )
        self.queue_oldest_age = _gauge(
            meter,
            "eventforge.queue.oldest_age",
            unit="s",
            description="Age of the oldest message of the latest receive from a queue.",
        )
        self.outbox_backlog = _gauge(
            meter,
            "eventforge.outbox.backlog",
            unit="{row}",
            description="Outbox rows not published yet.",
        )
        self.outbox_oldest_age = _gauge(
            meter,
            "eventforge.outbox.oldest_age",
            unit="s",
            description="Age of the oldest outbox row not published yet (0 when none).",
        )
        self.saga_outcomes = meter.create_counter(
            "eventforge.saga.outcomes",
            unit="{order}",
            description="Orders the saga brought to a terminal status, by status.",
        )
        self.saga_step_duration = meter.create_histogram(
            "eventforge.saga.step.duration",
            unit="s",
            description="Duration of one run of a saga step.",
            explicit_bucket_boundaries_advisory=SECOND_BUCKETS,
        )
        self.deliveries = meter.create_counter(
            "eventforge.notifier.deliveries",
            unit="{delivery}",
            description="Email and webhook delivery attempts, by channel, outcome and attempt.",
        )
        self._rpc_attributes: dict[tuple[str, grpc.StatusCode | None], dict[str, str | int]] = {}

    # gRPC

    def rpc_server(self, method: str, code: grpc.StatusCode | None, millis: float) -> None:
        """One inbound call of `method` (`/package.Service/Method`) that ended with `code`."""
        self.rpc_server_duration.record(millis, self._rpc(method, code))

    def rpc_client(self, method: str, code: grpc.StatusCode | None, millis: float) -> None:
        """One outbound call."""
        self.rpc_client_duration.record(millis, self._rpc(method, code))

    def _rpc(self, method: str, code: grpc.StatusCode | None) -> dict[str, str | int]:
        key = (method, code)
        attributes = self._rpc_attributes.get(key)
        if attributes is None:
            service, _, name = method.lstrip("/").rpartition("/")
            # Loaded already by whoever answers or makes a call: a process without gRPC (ingest,
            # the scheduler) never imports it.
            import grpc

            status = code or grpc.StatusCode.UNKNOWN
            attributes = {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "rpc.grpc.status_code": int(status.value[0]),
            }
            if len(self._rpc_attributes) < _RPC_CACHE_LIMIT:
                self._rpc_attributes[key] = attributes
        return attributes

    # Messaging

    def message(self, queue: str, outcome: str, seconds: float, error_type: str | None) -> None:
        """One delivered message processed with `outcome` (`Outcome.value`) in `seconds`."""
        attributes: dict[str, str | int] = {
            "messaging.system": SQS,
            "messaging.destination.name": queue,
            "messaging.operation.name": "process",
            "eventforge.outcome": outcome,
        }
        if error_type:
            attributes["error.type"] = error_type
        self.consumed_messages.add(1, attributes)
        self.process_duration.record(seconds, attributes)

    def message_dead_lettered(self, queue: str, count: int = 1) -> None:
        self.dead_lettered.add(
            count, {"messaging.system": SQS, "messaging.destination.name": queue}
        )

    def queue_sampled(self, queue: str, *, visible: int, in_flight: int, delayed: int) -> None:
        """One GetQueueAttributes of `queue`: its approximate message counts."""
        queue_attrs = queue_attributes(queue)
        for state, value in (("visible", visible), ("in_flight", in_flight), ("delayed", delayed)):
            self.queue_depth.set(value, {**queue_attrs, "eventforge.queue.state": state})

    def queue_received(self, queue: str, oldest_age_seconds: float) -> None:
        """One receive from `queue`: the age of its oldest message (0 when it got none)."""
        self.queue_oldest_age.set(oldest_age_seconds, queue_attributes(queue))

    # Outbox

    def outbox(self, service: str, *, size: int, oldest_age_seconds: float) -> None:
        attributes = {"eventforge.service": service}
        self.outbox_backlog.set(size, attributes)
        self.outbox_oldest_age.set(oldest_age_seconds, attributes)

    # Saga

    def saga_outcome(self, outcome: str) -> None:
        self.saga_outcomes.add(1, {"eventforge.saga.outcome": outcome})

    @contextmanager
    def saga_step(self, step: str) -> Iterator[None]:
        """Time the block as one run of `step` (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.saga_step_duration.record(
                time.perf_counter() - started, {"eventforge.saga.step": step}
            )

    # Notifier

    def delivery(self, channel: str, outcome: str, attempt: int) -> None:
        """One delivery attempt (`channel` email or webhook); `attempt` counts from 1."""
        self.deliveries.add(
            1,
            {
                "eventforge.notifier.channel": channel,
                "eventforge.notifier.outcome": outcome,
                "eventforge.notifier.attempt": attempt,
            },
        )


def queue_attributes(queue: str) -> dict[str, str | int]:
    return {"messaging.system": SQS, "messaging.destination.name": queue}


_process_metrics: Metrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> Metrics:
    """The process's instruments, on the global meter provider; built on the first call."""
    global _process_metrics  # one set of instruments per process, built on first use
    if _process_metrics is None:
        with _process_lock:
            if _process_metrics is None:
                _process_metrics = Metrics()
    return _process_metrics


def _version() -> str:
    try:
        return metadata.version("eventforge")
    except metadata.PackageNotFoundError:
        return "unknown"
