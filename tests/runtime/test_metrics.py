"""The metrics: each instrument records what it should, read back with an InMemoryMetricReader.

Every test builds its own meter provider (`configure_telemetry(..., set_global=False)`) and hands
`Metrics(provider)` to what it exercises: nothing touches the process's global providers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from sqlalchemy.orm import Session

from eventforge.events.v1 import events_pb2
from eventforge.notifier.domain.model import NotificationStatus
from eventforge.notifier.service_layer import webhooks
from eventforge.notifier.service_layer.dispatcher import Dispatcher
from eventforge.notifier.service_layer.notifications import EmailPolicy
from eventforge.notifier.service_layer.ports import MailError
from eventforge.orders.domain.model import OrderStatus
from eventforge.orders.service_layer.saga import advance_saga, compensate
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.grpc.client import channel
from eventforge.runtime.grpc.server import start_server
from eventforge.runtime.messaging import relay as relay_module
from eventforge.runtime.messaging.consumer import QueuePoller, QueueRef
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.messages import Delivery, IncomingMessage
from eventforge.runtime.messaging.outbox import record_event
from eventforge.runtime.messaging.processing import HandlerRegistry, MessageProcessor
from eventforge.runtime.messaging.relay import OutboxRelay, run_relay
from eventforge.runtime.metrics import Metrics, process_metrics
from eventforge.runtime.migrations import upgrade
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import (
    Telemetry,
    configure_telemetry,
    otlp_metric_exporter,
    otlp_metric_readers,
)
from tests.notifier.fakes import FakeMailer, FakeResolver, FakeTransport
from tests.notifier.fakes import FakeUnitOfWork as NotifierUnitOfWork
from tests.notifier.test_dispatcher import POLICY, eventually
from tests.notifier.test_handlers import PUBLIC, confirmed, run_fan_out
from tests.orders.fakes import Crash
from tests.orders.test_saga import RETRY, placed
from tests.runtime.test_grpc_runtime import SERVICE as ORDERS_SERVICE
from tests.runtime.test_grpc_runtime import ScriptedOrders

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_METRICS_EXPORTER",
)


@dataclass(frozen=True)
class Point:
    name: str
    unit: str
    attributes: dict[str, Any]
    value: float
    """A sum's or gauge's value; a histogram's count."""
    total: float = 0.0
    """A histogram's sum."""


@dataclass
class Recorded:
    """A meter provider of its own, an in-memory reader on it and the `Metrics` on both."""

    telemetry: Telemetry
    reader: InMemoryMetricReader
    metrics: Metrics

    def points(self, name: str, **attributes: Any) -> list[Point]:
        found = []
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        values = dict(point.attributes or {})
                        if any(values.get(k) != v for k, v in attributes.items()):
                            continue
                        count = getattr(point, "count", None)
                        found.append(
                            Point(
                                name,
                                metric.unit or "",
                                values,
                                float(count if count is not None else point.value),  # type: ignore[union-attr]
                                float(getattr(point, "sum", 0.0)),
                            )
                        )
        return found

    def value(self, name: str, **attributes: Any) -> float:
        """The summed values (counts, for a histogram) of the matching points; 0 without any."""
        return sum(p.value for p in self.points(name, **attributes))


@pytest.fixture
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def recorded(tmp_path: Path, clean_otel_environment: pytest.MonkeyPatch) -> Iterator[Recorded]:
    reader = InMemoryMetricReader()
    telemetry = configure_telemetry(
        "orders", Settings(data_dir=tmp_path), set_global=False, metric_readers=[reader]
    )
    yield Recorded(telemetry, reader, Metrics(telemetry.meter_provider))
    telemetry.shutdown()


# --- the provider and its exporters ---------------------------------------------------------------


def test_the_provider_carries_the_service_resource_and_shuts_down_once(
    recorded: Recorded,
) -> None:
    recorded.metrics.saga_outcome("CONFIRMED")
    data = recorded.reader.get_metrics_data()
    assert data is not None
    [resource_metrics] = data.resource_metrics
    assert resource_metrics.resource.attributes["service.name"] == "eventforge-orders"
    assert resource_metrics.scope_metrics[0].scope.name == "eventforge"
    recorded.telemetry.shutdown()
    recorded.telemetry.shutdown()  # idempotent


def test_no_endpoint_no_exporter(clean_otel_environment: pytest.MonkeyPatch) -> None:
    assert otlp_metric_readers() == []
    clean_otel_environment.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1")
    assert otlp_metric_readers() == []  # a traces endpoint is for traces only


@pytest.mark.parametrize(
    ("variables", "exporter"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, GrpcMetricExporter),
        (
            {
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:1/v1/metrics",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            },
            HttpMetricExporter,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            HttpMetricExporter,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",  # the signal's own wins
            },
            GrpcMetricExporter,
        ),
    ],
)
def test_an_endpoint_exports_periodically_with_the_configured_protocol(
    clean_otel_environment: pytest.MonkeyPatch, variables: dict[str, str], exporter: type
) -> None:
    for name, value in variables.items():
        clean_otel_environment.setenv(name, value)
    clean_otel_environment.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
    [reader] = otlp_metric_readers()
    try:
        assert isinstance(reader, PeriodicExportingMetricReader)
        assert isinstance(reader._exporter, exporter)
        assert reader._export_interval_millis == 3_600_000  # the SDK read the interval
    finally:
        reader.shutdown(timeout_millis=1000)


def test_an_http_exporter_posts_to_the_metrics_endpoint_as_given(
    clean_otel_environment: pytest.MonkeyPatch,
) -> None:
    clean_otel_environment.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:9/v1/metrics"
    )
    clean_otel_environment.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    exporter = otlp_metric_exporter()
    assert isinstance(exporter, HttpMetricExporter)
    assert exporter._endpoint == "http://127.0.0.1:9/v1/metrics"
    clean_otel_environment.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
    clean_otel_environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert otlp_metric_exporter()._endpoint == "http://127.0.0.1:9/v1/metrics"  # type: ignore[attr-defined]


def test_an_unknown_protocol_fails_and_none_turns_the_export_off(
    clean_otel_environment: pytest.MonkeyPatch,
) -> None:
    clean_otel_environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    clean_otel_environment.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="unsupported OTLP metrics protocol 'http/json'"):
        otlp_metric_readers()
    clean_otel_environment.setenv("OTEL_METRICS_EXPORTER", "none")
    assert otlp_metric_readers() == []


def test_the_process_metrics_are_built_once_on_first_use() -> None:
    assert process_metrics() is process_metrics()


# --- gRPC -----------------------------------------------------------------------------------------


def test_every_server_and_client_call_is_timed_by_method_and_code(recorded: Recorded) -> None:
    servicer = ScriptedOrders()  # type: ignore[abstract]  # only GetOrder is scripted
    running = start_server(
        Settings(),
        "127.0.0.1:0",
        lambda s: orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, s),
        [ORDERS_SERVICE],
        metrics=recorded.metrics,
    )
    try:
        ch = channel(
            Settings(), f"127.0.0.1:{running.port}", ORDERS_SERVICE, metrics=recorded.metrics
        )
        stub = orders_pb2_grpc.OrdersServiceStub(ch)
        stub.GetOrder(orders_pb2.GetOrderRequest(order_id="o-1"))
        stub.GetOrder.future(orders_pb2.GetOrderRequest(order_id="o-2")).result()
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetOrder(orders_pb2.GetOrderRequest(order_id="missing"))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        running.stop(0)
    base = {
        "rpc.system": "grpc",
        "rpc.service": "eventforge.orders.v1.OrdersService",
        "rpc.method": "GetOrder",
    }
    for name in ("rpc.server.duration", "rpc.client.duration"):
        [ok] = recorded.points(name, **base, **{"rpc.grpc.status_code": 0})
        assert ok.value == 2
        assert ok.unit == "ms"
        assert ok.total > 0
        assert set(ok.attributes) == {*base, "rpc.grpc.status_code"}
        [not_found] = recorded.points(name, **base, **{"rpc.grpc.status_code": 5})
        assert not_found.value == 1


# --- messaging ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_service_engine(Settings(data_dir=tmp_path), "orders")
    upgrade(engine, "orders")
    yield engine
    engine.dispose()


def _registry(fail: set[str]) -> HandlerRegistry:
    registry = HandlerRegistry()

    def handle(message: IncomingMessage, session: Session) -> None:
        del session
        assert isinstance(message.payload, events_pb2.OrderPlaced)
        if message.payload.order_id in fail:
            raise LookupError(f"cannot handle {message.payload.order_id}")

    registry.register("order.placed", handle, name="metrics-test")
    return registry


def _placed(order_id: str) -> str:
    return encode(
        new_envelope(events_pb2.OrderPlaced(order_id=order_id), source="orders", subject=order_id)
    )


def test_each_delivered_message_is_counted_and_timed_by_queue_and_outcome(
    recorded: Recorded, sqlite_engine: sa.Engine
) -> None:
    processor = MessageProcessor(
        sqlite_engine, _registry({"bad"}), trace.NoOpTracer(), metrics=recorded.metrics
    )
    good = Delivery("m-1", _placed("good"), queue_name="q-orders")
    for delivery in (
        good,
        good,  # a duplicate
        Delivery("m-2", _placed("bad"), queue_name="q-orders"),
        Delivery("m-3", "not JSON", queue_name="q-orders"),
        Delivery("m-4", _placed("other"), queue_name="q-other"),
    ):
        processor.process_message(delivery)

    queue = {"messaging.destination.name": "q-orders"}
    consumed = "messaging.client.consumed.messages"
    assert recorded.value(consumed, **queue) == 4
    assert recorded.value(consumed, **queue, **{"eventforge.outcome": "processed"}) == 1
    assert recorded.value(consumed, **queue, **{"eventforge.outcome": "duplicate"}) == 1
    [failed] = recorded.points(consumed, **queue, **{"eventforge.outcome": "failed"})
    assert failed.attributes == {
        "messaging.system": "aws_sqs",
        "messaging.destination.name": "q-orders",
        "messaging.operation.name": "process",
        "eventforge.outcome": "failed",
        "error.type": "LookupError",
    }
    [unparseable] = recorded.points(consumed, **queue, **{"eventforge.outcome": "unparseable"})
    assert unparseable.attributes["error.type"].endswith(".ParseError")
    assert recorded.value(consumed, **{"messaging.destination.name": "q-other"}) == 1
    durations = recorded.points("messaging.process.duration", **queue)
    assert sum(p.value for p in durations) == 4
    assert {p.unit for p in durations} == {"s"}


@dataclass
class FakeSqs:
    """The SQS calls of a queue poller, scripted: one batch, then nothing."""

    batches: list[list[dict[str, Any]]]
    attributes: dict[str, str] = field(
        default_factory=lambda: {
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 3}),
        }
    )
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def get_queue_attributes(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("get_queue_attributes", request["AttributeNames"]))
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": "7",
                "ApproximateNumberOfMessagesNotVisible": "2",
                "ApproximateNumberOfMessagesDelayed": "0",
                **self.attributes,
            }
        }

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("receive_message", None))
        return {"Messages": self.batches.pop(0) if self.batches else []}

    def delete_message_batch(self, **request: Any) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in request["Entries"]]}

    def change_message_visibility_batch(self, **request: Any) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in request["Entries"]]}


def _sqs_message(message_id: str, body: str, *, receives: int, age: float) -> dict[str, Any]:
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": str(receives),
            "SentTimestamp": str(int((time.time() - age) * 1000)),
        },
        "MessageAttributes": {"event_type": {"DataType": "String", "StringValue": "order.placed"}},
    }


def test_a_poller_counts_last_receive_failures_and_the_age_of_what_it_receives(
    recorded: Recorded, sqlite_engine: sa.Engine
) -> None:
    sqs = FakeSqs(
        [
            [
                _sqs_message("m-1", _placed("bad-1"), receives=3, age=40),  # its last receive
                _sqs_message("m-2", _placed("bad-2"), receives=1, age=5),  # retried later
                _sqs_message("m-3", "not JSON", receives=4, age=10),  # last, too
                _sqs_message("m-4", _placed("fine"), receives=3, age=1),  # last, but handled
            ]
        ]
    )
    processor = MessageProcessor(
        sqlite_engine,
        _registry({"bad-1", "bad-2"}),
        trace.NoOpTracer(),
        metrics=recorded.metrics,
    )
    poller = QueuePoller(sqs, QueueRef("q-orders", "http://sqs/q-orders"), processor)  # type: ignore[arg-type]

    result = poller.poll_once()

    assert len(result.failed) == 3
    # The visibility timeout and the redrive policy come in the one call a poller makes anyway.
    assert sqs.calls[0] == ("get_queue_attributes", ["VisibilityTimeout", "RedrivePolicy"])
    queue = {"messaging.system": "aws_sqs", "messaging.destination.name": "q-orders"}
    [dead] = recorded.points("eventforge.messaging.dead_lettered")
    assert dead.attributes == queue
    assert dead.value == 2
    assert dead.unit == "{message}"
    [age] = recorded.points("eventforge.queue.oldest_age")
    assert age.attributes == queue
    assert 39 <= age.value < 60
    poller.poll_once()  # an empty receive: nothing older is waiting
    assert recorded.value("eventforge.queue.oldest_age") == 0
    assert [c for c, _ in sqs.calls].count("get_queue_attributes") == 1


def test_a_poller_samples_its_queue_depth_only_once_the_gauge_is_collected(
    recorded: Recorded, sqlite_engine: sa.Engine
) -> None:
    sqs = FakeSqs([])
    processor = MessageProcessor(
        sqlite_engine, _registry(set()), trace.NoOpTracer(), metrics=recorded.metrics
    )
    poller = QueuePoller(
        sqs,  # type: ignore[arg-type]
        QueueRef("q-orders", "http://sqs/q-orders", visibility_timeout=30),
        processor,
    )
    poller._sample_depth()
    assert sqs.calls == []  # nobody collects the gauge: no SQS call for it

    assert recorded.points("eventforge.queue.depth") == []  # a first collection, of nothing
    poller._sample_depth()
    poller._sample_depth()  # within QUEUE_SAMPLE_SECONDS: no second call
    assert sqs.calls == [
        (
            "get_queue_attributes",
            [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
    ]
    depth = {
        p.attributes["eventforge.queue.state"]: p.value
        for p in recorded.points(
            "eventforge.queue.depth", **{"messaging.destination.name": "q-orders"}
        )
    }
    assert depth == {"visible": 7, "in_flight": 2, "delayed": 0}


# --- the outbox -----------------------------------------------------------------------------------


def _outbox_row(engine: sa.Engine, order_id: str) -> None:
    with Session(engine) as session:
        record_event(session, "orders", events_pb2.OrderPlaced(order_id=order_id), subject=order_id)
        session.commit()


class _NoSns:
    def publish_batch(self, **request: Any) -> Mapping[str, Any]:
        raise AssertionError("nothing is published in these tests")


def test_the_relay_reports_its_backlog_and_samples_it_while_collected(
    recorded: Recorded, sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = OutboxRelay(
        engine=sqlite_engine,
        sns=_NoSns(),  # type: ignore[arg-type]
        topic_arns={"orders": "arn:aws:sns:us-east-1:000000000000:orders"},
        tracer=trace.NoOpTracer(),
        metrics=recorded.metrics,
    )
    assert relay.service == "orders"  # the publisher of the topic, by the topology
    assert not relay.backlog_wanted
    _outbox_row(sqlite_engine, "o-1")
    relay.measure_backlog()
    service = {"eventforge.service": "orders"}
    [backlog] = recorded.points("eventforge.outbox.backlog", **service)
    assert (backlog.value, backlog.unit) == (1, "{row}")
    [age] = recorded.points("eventforge.outbox.oldest_age", **service)
    assert age.unit == "s"
    assert relay.backlog_wanted  # collected: the relay now samples on its own

    monkeypatch.setattr(relay_module, "OUTBOX_SAMPLE_SECONDS", 0.05)
    monkeypatch.setattr(relay, "publish_batch", lambda: 0)  # a relay with nothing to claim
    _outbox_row(sqlite_engine, "o-2")
    stop = threading.Event()
    loop = threading.Thread(
        target=run_relay,
        args=(relay, stop, lambda timeout: stop.wait(0.02)),
        kwargs={"report_seconds": 3600},
        daemon=True,
    )
    loop.start()
    try:
        _outbox_row(sqlite_engine, "o-3")
        eventually(lambda: recorded.value("eventforge.outbox.backlog", **service) == 3)
    finally:
        stop.set()
        loop.join(5)


# --- the saga -------------------------------------------------------------------------------------


def test_the_saga_counts_its_terminal_outcomes_and_times_its_steps(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    m = recorded.metrics
    uow, gateway, order_id = placed()
    assert advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY, metrics=m).status
    advance_saga(order_id=order_id, uow=uow, gateway=gateway, retry=RETRY, metrics=m)  # again
    uow, gateway, short = placed(stock=1)
    advance_saga(order_id=short, uow=uow, gateway=gateway, retry=RETRY, metrics=m)
    uow, gateway, declined = placed("tok_decline")
    advance_saga(order_id=declined, uow=uow, gateway=gateway, retry=RETRY, metrics=m)

    # A refund that fails after a cancel: the order waits for an operator.
    uow, gateway, refund = placed("tok_refund_fails")
    uow.crash_at = {4}  # the confirm's commit
    with pytest.raises(Crash):
        advance_saga(order_id=refund, uow=uow, gateway=gateway, retry=RETRY, metrics=m)
    uow.crash_at = set()
    with uow:
        order = uow.orders.get(refund, for_update=True)
        assert order is not None
        order.request_cancel("changed my mind")
        uow.orders.save(uow.track(order))
        uow.commit()
    with caplog.at_level("INFO", logger="eventforge.orders.saga"):
        failed = compensate(order_id=refund, uow=uow, gateway=gateway, retry=RETRY, metrics=m)
    assert failed.status is OrderStatus.COMPENSATION_FAILED

    outcomes = {
        p.attributes["eventforge.saga.outcome"]: p.value
        for p in recorded.points("eventforge.saga.outcomes")
    }
    assert outcomes == {"CONFIRMED": 1, "FAILED": 2, "COMPENSATION_FAILED": 1}
    [line] = [r for r in caplog.records if getattr(r, "saga_outcome", None)]
    assert line.saga_outcome == "COMPENSATION_FAILED"  # type: ignore[attr-defined]
    assert line.levelname == "ERROR"
    steps = {
        p.attributes["eventforge.saga.step"]: p.value
        for p in recorded.points("eventforge.saga.step.duration")
    }
    # Confirmed (3 steps), redelivered (a reserve that finds it done), out of stock (1),
    # declined (reserve, charge, compensate), refund refused (reserve, charge, confirm: crash).
    assert steps == {"reserve_inventory": 5, "charge_payment": 3, "confirm": 2, "compensate": 2}


# --- the notifier ---------------------------------------------------------------------------------


@dataclass
class RefusesFirst(FakeMailer):
    """Refuses its first email (`fail_with`), then sends."""

    def send(
        self, *, notification_id: str, recipient: str, subject: str, text: str, html: str
    ) -> str:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        return super().send(
            notification_id=notification_id,
            recipient=recipient,
            subject=subject,
            text=text,
            html=html,
        )


def test_every_delivery_attempt_is_counted_by_channel_outcome_and_attempt(
    recorded: Recorded,
) -> None:
    uow, resolver = NotifierUnitOfWork(), FakeResolver(PUBLIC)
    webhooks.register_webhook(
        command=webhooks.RegisterWebhook("https://hooks.example.com/", ("order.confirmed",), ""),
        uow=uow,
        resolver=resolver,
        allowed_hosts=frozenset(),
    )
    run_fan_out(uow, confirmed())
    mailer = RefusesFirst(fail_with=MailError("mailbox full"))
    dispatcher = Dispatcher(
        uow=uow,
        transport=FakeTransport(statuses={"hooks.example.com": 503}),
        resolver=resolver,
        mailer=mailer,
        policy=POLICY,
        email_policy=EmailPolicy(backoff=POLICY.backoff),
        concurrency=2,
        metrics=recorded.metrics,
    )
    try:

        def finished() -> bool:
            dispatcher.run_once()
            dispatcher.wait_idle(1)
            return all(d.status.finished for d in uow.deliveries.rows.values()) and all(
                n.status is NotificationStatus.SENT for n in uow.notifications.rows.values()
            )

        eventually(finished)
    finally:
        dispatcher.shutdown()

    def by(channel: str) -> dict[tuple[str, int], float]:
        points = recorded.points(
            "eventforge.notifier.deliveries", **{"eventforge.notifier.channel": channel}
        )
        return {
            (
                p.attributes["eventforge.notifier.outcome"],
                p.attributes["eventforge.notifier.attempt"],
            ): (p.value)
            for p in points
        }

    assert by("webhook") == {("failed", 1): 1, ("failed", 2): 1, ("failed", 3): 1}
    assert by("email") == {("refused", 1): 1, ("succeeded", 2): 1}
