"""The consumer runtime on PostgreSQL and moto's server: inbox, failures, visibility, traces."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config
from opentelemetry import trace
from sqlalchemy.orm import Session

from eventforge.events.v1.events_pb2 import Envelope, OrderCancelled, OrderPlaced
from eventforge.runtime import aws
from eventforge.runtime.context import current_request_id
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.emulator import free_port
from eventforge.runtime.messaging.consumer import (
    BatchResult,
    Consumer,
    ConsumerOptions,
    QueueRef,
    retry_delay,
)
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.messages import S3_OBJECT_CREATED, Delivery, IncomingMessage
from eventforge.runtime.messaging.processing import (
    HandlerRegistry,
    MessageProcessor,
    Outcome,
    handle_lambda_batch,
    purge_inbox,
)
from eventforge.runtime.messaging.schema import inbox_table
from eventforge.runtime.migrations import upgrade
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.settings import ServiceName, Settings
from eventforge.runtime.telemetry import configure_telemetry, read_span_file
from tests.fixtures.emulator import TEST_PREFIX, TEST_REGION, queue_depth

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SERVICE: ServiceName = "notifier"
HANDLER = "consumer-test.record"
"""Every handler of these tests writes inbox rows under this name, and cleans only those."""

effects_metadata = sa.MetaData()
effects = sa.Table(
    "consumer_test_effects",
    effects_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("note", sa.String(200), nullable=False),
)

PRODUCER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN_ID = "b7ad6b7169203331"


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_service_engine(Settings(database_url=database_url), SERVICE)
    upgrade(engine, SERVICE)
    effects_metadata.create_all(engine)
    yield engine
    effects_metadata.drop_all(engine)
    engine.dispose()


def _clean(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.delete(effects))
        connection.execute(
            sa.delete(inbox_table).where(inbox_table.c.handler.like("consumer-test%"))
        )


@pytest.fixture
def engine(module_engine: sa.Engine) -> Iterator[sa.Engine]:
    _clean(module_engine)
    yield module_engine
    _clean(module_engine)


@pytest.fixture
def queue(provisioned: ProvisionedTopology) -> QueueRef:
    return QueueRef(f"{TEST_PREFIX}-notifier-orders", provisioned.queues["notifier-orders"].url)


class Recorder:
    """A handler that writes one effect row per call, optionally failing or sleeping first."""

    def __init__(
        self,
        *,
        fail_when: Callable[[IncomingMessage], bool] = lambda _m: False,
        sleep: float = 0.0,
    ) -> None:
        self.fail_when = fail_when
        self.sleep = sleep
        self.calls: list[IncomingMessage] = []
        self.request_ids: list[str | None] = []
        self.started = threading.Event()
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, message: IncomingMessage, session: Session) -> None:
        with self._lock:
            self.calls.append(message)
            self.request_ids.append(current_request_id())
        self.started.set()
        session.execute(sa.insert(effects).values(event_id=message.event_id, note=_note(message)))
        time.sleep(self.sleep)
        if self.fail_when(message):
            raise RuntimeError(f"handler refuses {message.event_id}")
        self.finished.set()

    def registry(self, event_type: str = "order.placed") -> HandlerRegistry:
        registry = HandlerRegistry()
        registry.register(event_type, self, name=HANDLER)
        return registry


def _note(message: IncomingMessage) -> str:
    if message.s3 is not None:
        return message.s3.key
    payload = message.payload
    return str(getattr(payload, "order_id", ""))


def order_placed(order_id: str, request_id: str = "req-1") -> Envelope:
    return new_envelope(
        OrderPlaced(order_id=order_id), source="orders", subject=order_id, request_id=request_id
    )


def send(sqs: SQSClient, queue: QueueRef, body: str, **attributes: str) -> str:
    reply = sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=body,
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )
    return reply["MessageId"]


def send_envelope(sqs: SQSClient, queue: QueueRef, envelope: Envelope, **attributes: str) -> str:
    return send(sqs, queue, encode(envelope), event_type=envelope.event_type, **attributes)


def make_consumer(
    sqs: SQSClient,
    queue: QueueRef,
    engine: sa.Engine,
    handlers: HandlerRegistry,
    tracer: trace.Tracer | None = None,
    **options: Any,
) -> Consumer:
    settings: dict[str, Any] = {"wait_seconds": 1, "retry_base_seconds": 0, **options}
    return Consumer(
        sqs,
        [queue],
        sessions=engine,
        handlers=handlers,
        tracer=tracer or trace.NoOpTracer(),
        options=ConsumerOptions(**settings),
    )


def poll_until(
    consumer: Consumer, done: Callable[[BatchResult], bool], timeout: float = 15.0
) -> BatchResult:
    total = BatchResult()
    deadline = time.monotonic() + timeout
    while not done(total):
        assert time.monotonic() < deadline, f"gave up polling: {total}"
        total += consumer.poll_once()
    return total


def effect_notes(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.scalars(sa.select(effects.c.note)))


def inbox_rows(engine: sa.Engine) -> list[sa.Row[Any]]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(inbox_table).where(inbox_table.c.handler.like("consumer-test%"))
            )
        )


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


# --- pure ---------------------------------------------------------------------------------------


def test_retry_delay_doubles_per_receive_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    for receives, full in [(1, 1), (2, 2), (3, 4), (5, 16), (10, 300), (10_000, 300)]:
        delays = {retry_delay(receives, base=1, cap=300, rng=rng) for _ in range(50)}
        assert all(round(full / 2) <= d <= full for d in delays), (receives, delays)
    assert len({retry_delay(9, base=1, cap=300, rng=rng) for _ in range(50)}) > 1
    assert retry_delay(3, base=0, cap=300) == 0


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        ConsumerOptions(max_messages=11)
    with pytest.raises(ValueError, match="wait_seconds"):
        ConsumerOptions(wait_seconds=21)


def test_the_registry_names_handlers_and_refuses_a_second_one() -> None:
    registry = HandlerRegistry()

    @registry.on("order.placed")
    def on_placed(_message: IncomingMessage, _session: Session) -> None:
        pass

    registry.register("order.failed", Recorder())
    entry = registry.get("order.placed")
    assert entry is not None
    assert entry.name == "on_placed"
    assert registry.get("order.failed") == registry.get("order.failed")
    assert getattr(registry.get("order.failed"), "name", None) == "Recorder"
    assert registry.event_types == ("order.placed", "order.failed")
    with pytest.raises(ValueError, match="already"):
        registry.register("order.placed", on_placed)
    with pytest.raises(ValueError, match="longer"):
        registry.register("order.cancelled", on_placed, name="x" * 65)


def test_the_inbox_works_on_sqlite_too(tmp_path: Path) -> None:
    engine = create_service_engine(Settings(data_dir=tmp_path), SERVICE)
    upgrade(engine, SERVICE)
    effects_metadata.create_all(engine)
    try:
        recorder = Recorder()
        processor = MessageProcessor(engine, recorder.registry(), trace.NoOpTracer())
        delivery = Delivery("m-1", encode(order_placed("o-lite")), queue_name="q")

        outcomes = [processor.process_message(delivery).outcome for _ in range(2)]

        assert outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE]
        assert effect_notes(engine) == ["o-lite"]
        assert purge_inbox(engine, timedelta(days=1)) == 0
        assert purge_inbox(engine, timedelta(0), now=datetime.now(UTC) + timedelta(1)) == 1
    finally:
        engine.dispose()


def test_a_handler_with_its_own_transactions_runs_outside_the_inbox_one(tmp_path: Path) -> None:
    # On SQLite an open inbox transaction would lock out the handler's own writes.
    engine = create_service_engine(Settings(data_dir=tmp_path), SERVICE)
    upgrade(engine, SERVICE)
    effects_metadata.create_all(engine)
    calls: list[str] = []

    def saga_like(message: IncomingMessage, session: Session) -> None:
        del session
        calls.append(message.event_id)
        with engine.begin() as connection:
            connection.execute(sa.insert(effects).values(event_id=message.event_id, note="own"))

    registry = HandlerRegistry()
    registry.register("order.placed", saga_like, name=HANDLER, own_transactions=True)
    try:
        processor = MessageProcessor(engine, registry, trace.NoOpTracer())
        delivery = Delivery("m-own", encode(order_placed("o-own")), queue_name="q")
        outcomes = [processor.process_message(delivery).outcome for _ in range(2)]
        assert outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE]
        assert len(calls) == 1
        assert effect_notes(engine) == ["own"]
    finally:
        engine.dispose()


# --- integration --------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_duplicate_delivery_is_handled_once_and_both_are_deleted(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine
) -> None:
    recorder = Recorder()
    envelope = order_placed("o-dup")
    send_envelope(sqs, queue, envelope)
    send_envelope(sqs, queue, envelope)
    consumer = make_consumer(sqs, queue, engine, recorder.registry())

    total = poll_until(consumer, lambda t: len(t.deleted) == 2)

    assert sorted(r.outcome.value for r in total.results) == ["duplicate", "processed"]
    assert effect_notes(engine) == ["o-dup"]
    [row] = inbox_rows(engine)
    assert (row.event_id, row.handler, row.event_type) == (
        envelope.event_id,
        HANDLER,
        "order.placed",
    )
    assert queue_depth(sqs, queue.url) == (0, 0)


@pytest.mark.integration
def test_two_workers_racing_on_one_event_do_its_work_once(engine: sa.Engine) -> None:
    recorder = Recorder(sleep=0.5)  # the winner holds the inbox row while the loser inserts it
    processor = MessageProcessor(engine, recorder.registry(), trace.NoOpTracer())
    envelope = order_placed("o-race")
    deliveries = [
        Delivery(f"m-{n}", encode(envelope), {"event_type": "order.placed"}, queue_name="q")
        for n in range(2)
    ]
    outcomes: list[Outcome] = []
    workers = [
        threading.Thread(target=lambda d=d: outcomes.append(processor.process_message(d).outcome))
        for d in deliveries
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sorted(o.value for o in outcomes) == ["duplicate", "processed"]
    assert len(recorder.calls) == 1
    assert effect_notes(engine) == ["o-race"]


@pytest.mark.integration
def test_an_event_without_handler_and_the_s3_test_event_are_acknowledged(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine
) -> None:
    recorder = Recorder()
    cancelled = new_envelope(OrderCancelled(order_id="o-c"), source="orders", subject="o-c")
    send_envelope(sqs, queue, cancelled)
    send(sqs, queue, '{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}')
    consumer = make_consumer(sqs, queue, engine, recorder.registry())

    total = poll_until(consumer, lambda t: len(t.deleted) == 2)

    assert [r.outcome for r in total.results] == [Outcome.IGNORED, Outcome.IGNORED]
    assert recorder.calls == []
    assert inbox_rows(engine) == []
    assert queue_depth(sqs, queue.url) == (0, 0)


@pytest.mark.integration
def test_a_poison_message_goes_to_the_dlq_while_its_batch_is_handled(
    sqs: SQSClient,
    queue: QueueRef,
    engine: sa.Engine,
    provisioned: ProvisionedTopology,
) -> None:
    recorder = Recorder(fail_when=lambda m: _note(m) == "poison")
    for order_id in ("good-1", "poison", "good-2"):
        send_envelope(sqs, queue, order_placed(order_id))
    garbage_id = send(sqs, queue, "this is not JSON")
    consumer = make_consumer(sqs, queue, engine, recorder.registry())
    dlq_url = provisioned.queues["notifier-orders"].dlq_url
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    try:
        wait_for(lambda: queue_depth(sqs, dlq_url)[0] == 2, timeout=30)
        assert worker.is_alive()
    finally:
        stop.set()
        worker.join(timeout=10)

    assert not worker.is_alive()
    assert effect_notes(engine) == ["good-1", "good-2"]  # the poison's effects rolled back
    assert sum(1 for m in recorder.calls if _note(m) == "poison") == 5  # max receives
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert "this is not JSON" in [m["Body"] for m in dead["Messages"]]
    assert garbage_id in [m["MessageId"] for m in dead["Messages"]]
    assert queue_depth(sqs, queue.url) == (0, 0)


@pytest.mark.integration
def test_an_unparseable_body_is_logged_with_its_id_and_left_in_the_queue(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = send(sqs, queue, "{not json")
    consumer = make_consumer(sqs, queue, engine, Recorder().registry())

    with caplog.at_level(logging.ERROR, logger="eventforge.runtime.messaging"):
        first = poll_until(consumer, lambda t: t.received == 1)
        second = poll_until(consumer, lambda t: t.received == 1)

    assert [(r.message_id, r.outcome) for r in first.results] == [(message_id, Outcome.UNPARSEABLE)]
    assert first.deleted == second.deleted == ()
    assert [r.receive_count for r in second.results] == [2]  # still there, redelivered
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert all(message_id in r.getMessage() for r in errors)
    assert all(getattr(r, "message_id", None) == message_id for r in errors)


@pytest.mark.integration
def test_a_failed_handler_leaves_nothing_behind_and_the_redelivery_does_the_work(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine
) -> None:
    recorder = Recorder(fail_when=lambda m: m.receive_count == 1)
    send_envelope(sqs, queue, order_placed("o-retry"))
    consumer = make_consumer(sqs, queue, engine, recorder.registry())

    first = poll_until(consumer, lambda t: t.received == 1)
    assert [r.outcome for r in first.results] == [Outcome.FAILED]
    assert first.results[0].error is not None
    assert "handler refuses" in first.results[0].error
    assert effect_notes(engine) == []
    assert inbox_rows(engine) == []

    second = poll_until(consumer, lambda t: t.received == 1)
    assert [r.outcome for r in second.results] == [Outcome.PROCESSED]
    assert effect_notes(engine) == ["o-retry"]
    assert len(inbox_rows(engine)) == 1
    assert queue_depth(sqs, queue.url) == (0, 0)


@pytest.mark.integration
def test_nothing_more_is_received_while_the_database_is_unreachable(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine, provisioned: ProvisionedTopology
) -> None:
    # Found by `make chaos`: every receive during a database outage counted towards the
    # redrive limit, so an outage longer than the retry schedule dead-lettered every message.
    down = threading.Event()
    down.set()
    recorder = Recorder(fail_when=lambda _m: down.is_set())
    probes: list[bool] = []

    def ready() -> bool:
        probes.append(not down.is_set())
        return probes[-1]

    send_envelope(sqs, queue, order_placed("o-outage"))
    consumer = Consumer(
        sqs,
        [queue],
        sessions=engine,
        handlers=recorder.registry(),
        tracer=trace.NoOpTracer(),
        options=ConsumerOptions(wait_seconds=1, retry_base_seconds=0, error_backoff_seconds=0.1),
        ready=ready,
    )
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    try:
        wait_for(lambda: len(probes) >= 5)  # several probes while "down", retries due at once
        assert len(recorder.calls) == 1
        down.clear()
        wait_for(lambda: effect_notes(engine) == ["o-outage"])
    finally:
        stop.set()
        worker.join(timeout=10)

    assert [m.receive_count for m in recorder.calls] == [1, 2]
    assert queue_depth(sqs, queue.url) == (0, 0)
    assert queue_depth(sqs, provisioned.queues["notifier-orders"].dlq_url) == (0, 0)


@pytest.mark.integration
def test_a_slow_handler_keeps_its_message_hidden_until_it_is_done(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine
) -> None:
    sqs.set_queue_attributes(QueueUrl=queue.url, Attributes={"VisibilityTimeout": "2"})
    recorder = Recorder(sleep=4.0)
    send_envelope(sqs, queue, order_placed("o-slow"))
    consumer = make_consumer(sqs, queue, engine, recorder.registry())
    results: list[BatchResult] = []
    worker = threading.Thread(
        target=lambda: results.append(poll_until(consumer, lambda t: t.received == 1))
    )
    worker.start()
    assert recorder.started.wait(10)

    stolen: list[str] = []
    while worker.is_alive():  # a second worker polling meanwhile gets nothing
        reply = sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=1, VisibilityTimeout=0)
        stolen += [m["MessageId"] for m in reply.get("Messages", [])]
    worker.join()

    assert stolen == []
    assert [r.outcome for r in results[0].results] == [Outcome.PROCESSED]
    assert len(results[0].deleted) == 1
    assert len(recorder.calls) == 1
    assert queue_depth(sqs, queue.url) == (0, 0)


@pytest.mark.integration
def test_the_process_span_continues_the_producers_trace_with_its_request_id(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine, tmp_path: Path
) -> None:
    telemetry = configure_telemetry(
        SERVICE, Settings(data_dir=tmp_path, span_file=tmp_path / "spans.jsonl"), set_global=False
    )
    recorder = Recorder(fail_when=lambda m: _note(m) == "o-bad")

    def traced(message: IncomingMessage, session: Session) -> None:
        with telemetry.tracer.start_as_current_span("handler work"):
            recorder(message, session)

    registry = HandlerRegistry()
    registry.register("order.placed", traced, name=HANDLER)
    good = order_placed("o-traced", request_id="ignored-envelope-id")
    bad = order_placed("o-bad", request_id="req-bad")
    traceparent = f"00-{PRODUCER_TRACE_ID}-{PRODUCER_SPAN_ID}-01"
    send_envelope(sqs, queue, good, traceparent=traceparent, request_id="req-trace")
    send_envelope(sqs, queue, bad)
    consumer = make_consumer(sqs, queue, engine, registry, tracer=telemetry.tracer)
    direct = order_placed("o-direct")
    try:
        total = poll_until(consumer, lambda t: t.received == 2)
        # Whatever span is current where processing runs (a receive call's) is not the parent.
        with telemetry.tracer.start_as_current_span("ambient"):
            consumer.processor.process_message(
                Delivery("m-direct", encode(direct), {"traceparent": traceparent}, queue_name="q")
            )
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()

    spans = read_span_file(tmp_path / "spans.jsonl")
    process = [s for s in spans if s["name"] == f"{queue.name} process"]
    [span] = [s for s in process if s["attributes"]["eventforge.event_id"] == good.event_id]
    [failed] = [s for s in process if s["attributes"]["eventforge.event_id"] == bad.event_id]
    [under_ambient] = [s for s in spans if s["name"] == "q process"]
    [work] = [s for s in spans if s["parent_span_id"] == span["span_id"]]
    message_ids = {r.message_id for r in total.results}

    assert span["kind"] == "CONSUMER"
    assert span["trace_id"] == PRODUCER_TRACE_ID
    assert span["parent_span_id"] == PRODUCER_SPAN_ID
    assert [(link["trace_id"], link["span_id"]) for link in span["links"]] == [
        (PRODUCER_TRACE_ID, PRODUCER_SPAN_ID)
    ]
    assert span["request_id"] == "req-trace"
    assert span["attributes"]["messaging.system"] == "aws_sqs"
    assert span["attributes"]["messaging.destination.name"] == queue.name
    assert span["attributes"]["messaging.operation.type"] == "process"
    assert span["attributes"]["messaging.message.id"] in message_ids
    assert span["attributes"]["eventforge.event_type"] == "order.placed"
    assert span["status"]["code"] == "UNSET"
    assert under_ambient["parent_span_id"] == PRODUCER_SPAN_ID
    assert under_ambient["request_id"] == "req-1"
    assert work["parent_span_id"] == span["span_id"]
    assert work["request_id"] == "req-trace"
    assert "req-trace" in recorder.request_ids
    # Without a traceparent the process span starts a trace, with the envelope's request id.
    assert failed["parent_span_id"] is None
    assert failed["links"] == []
    assert failed["request_id"] == "req-bad"
    assert failed["status"]["code"] == "ERROR"
    assert [e["name"] for e in failed["events"]] == ["exception"]


@pytest.mark.integration
def test_stopping_lets_the_running_handler_finish_and_acknowledge(
    sqs: SQSClient, queue: QueueRef, engine: sa.Engine
) -> None:
    recorder = Recorder(sleep=1.5)
    send_envelope(sqs, queue, order_placed("o-stop"))
    consumer = make_consumer(sqs, queue, engine, recorder.registry())
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    assert recorder.started.wait(10)

    stop.set()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert recorder.finished.is_set()
    assert effect_notes(engine) == ["o-stop"]
    assert queue_depth(sqs, queue.url) == (0, 0)


@pytest.mark.integration
def test_an_s3_upload_reaches_its_handler_with_the_decoded_key(
    sqs: SQSClient,
    engine: sa.Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
) -> None:
    uploads = QueueRef(f"{TEST_PREFIX}-files-uploads", provisioned.queues["files-uploads"].url)
    recorder = Recorder()
    aws.s3(aws_settings).put_object(
        Bucket=provisioned.buckets["uploads"], Key="incoming/my file(1).png", Body=b"png"
    )
    consumer = make_consumer(sqs, uploads, engine, recorder.registry(S3_OBJECT_CREATED))

    # The S3 test event sent when notifications were configured comes first, acknowledged.
    poll_until(
        consumer, lambda _t: bool(recorder.calls) and queue_depth(sqs, uploads.url) == (0, 0)
    )

    assert effect_notes(engine) == ["incoming/my file(1).png"]
    [row] = inbox_rows(engine)
    assert row.event_type == S3_OBJECT_CREATED


@pytest.mark.integration
def test_sqs_errors_are_logged_and_retried_until_stopped(
    aws_environment: None, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name=TEST_REGION,
        config=Config(connect_timeout=1, retries={"total_max_attempts": 1}),
    )
    queue = QueueRef("nowhere", "http://127.0.0.1:1/123456789012/nowhere", visibility_timeout=30)
    consumer = make_consumer(
        unreachable,
        queue,
        engine,
        Recorder().registry(),
        error_backoff_seconds=0.05,
        error_backoff_cap_seconds=0.2,
    )
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    with caplog.at_level(logging.ERROR, logger="eventforge.runtime.messaging"):
        worker.start()
        wait_for(lambda: len([r for r in caplog.records if "polling" in r.getMessage()]) >= 3)
        assert worker.is_alive()
        stop.set()
        worker.join(timeout=10)

    assert not worker.is_alive()


@pytest.mark.integration
def test_a_lambda_batch_reports_exactly_the_failed_records(engine: sa.Engine) -> None:
    recorder = Recorder(fail_when=lambda m: _note(m) == "o-bad")
    processor = MessageProcessor(engine, recorder.registry(), trace.NoOpTracer())

    def record(message_id: str, body: str) -> dict[str, Any]:
        return {
            "messageId": message_id,
            "receiptHandle": f"rh-{message_id}",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {
                "event_type": {"stringValue": "order.placed", "dataType": "String"}
            },
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{TEST_PREFIX}-notifier-orders",
        }

    response = handle_lambda_batch(
        [
            record("m-good", encode(order_placed("o-good"))),
            record("m-bad", encode(order_placed("o-bad"))),
        ],
        processor,
    )
    unparseable = handle_lambda_batch([record("m-junk", "junk")], processor, concurrency=2)

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert unparseable == {"batchItemFailures": [{"itemIdentifier": "m-junk"}]}
    assert effect_notes(engine) == ["o-good"]


@pytest.mark.integration
def test_a_redelivered_s3_record_is_skipped_by_the_inbox(engine: sa.Engine) -> None:
    recorder = Recorder()
    processor = MessageProcessor(engine, recorder.registry(S3_OBJECT_CREATED), trace.NoOpTracer())
    body = (
        '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": '
        '{"bucket": {"name": "b"}, "object": {"key": "incoming/a%2Bb.png", "sequencer": "01"}}}]}'
    )

    first = processor.process_message(Delivery("m-1", body, queue_name="q"))
    again = processor.process_message(Delivery("m-2", body, queue_name="q"))

    assert (first.outcome, again.outcome) == (Outcome.PROCESSED, Outcome.DUPLICATE)
    assert effect_notes(engine) == ["incoming/a+b.png"]


@pytest.mark.integration
def test_purge_inbox_deletes_only_old_rows(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    ages = {"old-1": 30, "old-2": 10, "new-1": 1, "new-2": 0}
    with engine.begin() as connection:
        connection.execute(
            sa.insert(inbox_table),
            [
                {
                    "event_id": event_id,
                    "handler": HANDLER,
                    "event_type": "order.placed",
                    "processed_at": now - timedelta(days=days),
                }
                for event_id, days in ages.items()
            ],
        )

    assert purge_inbox(engine, timedelta(days=7), now=now) == 2
    with Session(engine) as session, session.begin():
        assert purge_inbox(session, timedelta(hours=12), now=now) == 1

    assert [row.event_id for row in inbox_rows(engine)] == ["new-2"]
