"""The event backbone benchmarks, in this process, each with its plain-boto3 baseline.

Subjects run the runtime's own code with tracing on (spans to the run's span file, botocore
instrumented as in every service process); baselines call the emulator with plain boto3 and
instrumentation suppressed. Every benchmark uses the `orders` topic and the `orders-orders`
queue (the only subscriber of `order.placed`) of the run's emulator, and leaves the queue empty.

- relay: N rows in the outbox, drained by `OutboxRelay.publish_batch`; baseline: N messages
  of the same kind with `sns.publish_batch`, 10 per call (the relay's batch). The two take
  turns batch by batch.
- consumer: a queue pre-filled with 2N envelopes; the runtime's `QueuePoller.poll_once`
  (receive 10, process them 4 at a time with the inbox on PostgreSQL and a trivial handler,
  delete the batch) and a plain receive 10 + `delete_message_batch` take turns until each has
  N.
- end to end: one event every `interval` seconds, from the commit of the producer's
  transaction (outbox row + NOTIFY) to the consumer having handled it (inbox committed), with
  the relay (`run_relay`, woken by LISTEN/NOTIFY) and the consumer (`QueuePoller.run`) running
  in threads; baseline: `sns.publish` to `receive_message` returning it (long polling).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from eventforge.common.v1.money_pb2 import Money
from eventforge.events.v1.events_pb2 import Envelope, OrderPlaced
from eventforge.runtime import aws
from eventforge.runtime.context import new_request_id, request_context
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.messaging.consumer import ConsumerOptions, QueuePoller, QueueRef
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.messages import Delivery, IncomingMessage
from eventforge.runtime.messaging.outbox import message_attributes, notify_channel, record_event
from eventforge.runtime.messaging.processing import MessageProcessor, MessageResult
from eventforge.runtime.messaging.relay import SNS_BATCH_LIMIT, OutboxRelay, run_relay
from eventforge.runtime.messaging.wakeup import PostgresListener, commit_waiter
from eventforge.runtime.migrations import migrate
from eventforge.runtime.provision import provision
from eventforge.runtime.settings import ServiceName, Settings
from eventforge.topology import TOPOLOGY

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishBatchRequestEntryTypeDef
    from mypy_boto3_sqs import SQSClient

SERVICE: ServiceName = "orders"
EVENT_TYPE = "order.placed"
RECEIVE_WAIT_SECONDS = 2
"""Long-polling wait of every receive here (subject and baseline): short, so threads stop soon."""
SQS_BATCH = 10
CONSUMER_CONCURRENCY = 4
"""As the workers' default (EVENTFORGE_WORKER_CONCURRENCY)."""


@dataclass(frozen=True)
class Throughput:
    """`count` items in `seconds`."""

    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


class Backbone:
    """The run's topic, queue, database engine and clients, provisioned and migrated."""

    def __init__(self, settings: Settings, tracer: trace.Tracer) -> None:
        self.settings = settings
        self.tracer = tracer
        provisioned = provision(settings, TOPOLOGY)
        migrate(settings, SERVICE)
        self.engine: Engine = create_service_engine(settings, SERVICE)
        # As the services write: their sessions wake the relay after commit.
        self.sessions = session_factory(self.engine)
        self.topic = TOPOLOGY.topic_published_by(SERVICE).name
        self.topic_arn = provisioned.topic_arns[self.topic]
        resolved = TOPOLOGY.resolve_for(settings).queues
        queue = next(q for q in TOPOLOGY.queues_consumed_by(SERVICE) if q.topic == self.topic)
        self.queue = QueueRef(
            resolved[queue.name].name,
            provisioned.queues[queue.name].url,
            visibility_timeout=queue.visibility_timeout_seconds,
        )
        self.sns: SNSClient = aws.sns(settings)
        self.sqs: SQSClient = aws.sqs(settings)

    def close(self) -> None:
        self.engine.dispose()

    def relay(self) -> OutboxRelay:
        return OutboxRelay(
            engine=self.engine,
            sns=self.sns,
            topic_arns={self.topic: self.topic_arn},
            tracer=self.tracer,
        )

    def reset(self) -> None:
        """Empty the queue and the outbox and inbox tables."""
        self.drain()
        with self.engine.begin() as connection:
            connection.execute(text("TRUNCATE outbox, inbox"))

    def drain(self, timeout: float = 120.0) -> int:
        """Receive and delete until the queue is empty (PurgeQueue is once a minute only)."""
        deleted = 0
        deadline = time.monotonic() + timeout
        with suppress_instrumentation():
            while time.monotonic() < deadline:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                ).get("Messages", [])
                if messages:
                    self.sqs.delete_message_batch(
                        QueueUrl=self.queue.url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                    deleted += len(messages)
                    continue
                left = self.sqs.get_queue_attributes(
                    QueueUrl=self.queue.url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )["Attributes"]
                if not any(int(value) for value in left.values()):
                    return deleted
                time.sleep(0.2)
        raise RuntimeError(f"queue {self.queue.name} did not drain in {timeout:.0f}s")

    # --- producing ------------------------------------------------------------------------

    def payload(self) -> OrderPlaced:
        order_id = str(uuid.uuid4())
        return OrderPlaced(
            order_id=order_id,
            customer_id="bench-customer",
            customer_email="bench@example.com",
            total=Money(amount_minor=2500, currency="USD"),
        )

    @contextmanager
    def producing(self) -> Iterator[None]:
        """As in a request: a server span and a request id, so rows carry a trace context."""
        with (
            request_context(new_request_id()),
            self.tracer.start_as_current_span("bench produce", kind=trace.SpanKind.SERVER),
        ):
            yield

    def record(self, session: Session) -> Envelope:
        payload = self.payload()
        return record_event(session, SERVICE, payload, subject=payload.order_id)

    def fill_outbox(self, count: int, per_transaction: int = 50) -> None:
        done = 0
        while done < count:
            with self.producing(), self.sessions() as session, session.begin():
                for _ in range(min(per_transaction, count - done)):
                    self.record(session)
                    done += 1

    def envelope_message(self) -> tuple[str, str, dict[str, str]]:
        """(event id, body, attributes) of an event as the relay would publish it."""
        with self.producing():
            payload = self.payload()
            envelope = new_envelope(
                payload, source=SERVICE, subject=payload.order_id, request_id=new_request_id()
            )
            return envelope.event_id, encode(envelope), message_attributes(envelope)

    def fill_queue(self, count: int) -> None:
        """Send `count` envelopes straight to the queue (raw delivery), 10 per call."""
        messages = [self.envelope_message() for _ in range(count)]
        with suppress_instrumentation():
            for start in range(0, count, SNS_BATCH_LIMIT):
                chunk = messages[start : start + SNS_BATCH_LIMIT]
                self.sqs.send_message_batch(
                    QueueUrl=self.queue.url,
                    Entries=[
                        {
                            "Id": str(i),
                            "MessageBody": body,
                            "MessageAttributes": _attributes(attributes),
                        }
                        for i, (_event_id, body, attributes) in enumerate(chunk)
                    ],
                )


def _attributes(attributes: dict[str, str]) -> dict[str, Any]:
    """Message attributes as SNS and SQS take them (String values only)."""
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in attributes.items()
        if value
    }


# --- relay ---------------------------------------------------------------------------------


def relay_pair(backbone: Backbone, count: int) -> tuple[Throughput, Throughput]:
    """(boto3 publish_batch, relay) publishing `count` events each, batch by batch in turn.

    Alternating every batch of 10 exposes both to the same moment's machine noise. The relay
    drains `count` fresh outbox rows with `OutboxRelay.publish_batch`; the baseline publishes
    the same kind of messages (envelope, attributes with trace context) with plain boto3.
    """
    backbone.reset()
    backbone.fill_outbox(count)
    messages = [backbone.envelope_message() for _ in range(count)]
    relay = backbone.relay()
    base_seconds = relay_seconds = 0.0
    published = relayed = 0
    while published < count or relayed < count:
        if published < count:
            chunk = messages[published : published + SNS_BATCH_LIMIT]
            started = time.perf_counter()
            _publish_batch(backbone, chunk)
            base_seconds += time.perf_counter() - started
            published += len(chunk)
        if relayed < count:
            started = time.perf_counter()
            batch = relay.publish_batch()
            relay_seconds += time.perf_counter() - started
            if batch == 0:
                raise RuntimeError(f"the relay published {relayed} of {count} rows")
            relayed += batch
    backbone.reset()
    return Throughput(published, base_seconds), Throughput(relayed, relay_seconds)


def _publish_batch(backbone: Backbone, chunk: list[tuple[str, str, dict[str, str]]]) -> None:
    entries: list[PublishBatchRequestEntryTypeDef] = [
        {"Id": str(i), "Message": body, "MessageAttributes": _attributes(attributes)}
        for i, (_event_id, body, attributes) in enumerate(chunk)
    ]
    with suppress_instrumentation():
        reply = backbone.sns.publish_batch(
            TopicArn=backbone.topic_arn, PublishBatchRequestEntries=entries
        )
    if reply.get("Failed"):
        raise RuntimeError(f"publish_batch failed: {reply['Failed']}")


# --- consumer ---------------------------------------------------------------------------------


class _TimedProcessor(MessageProcessor):
    """The runtime's processor; notes when each event's processing (inbox commit) finished."""

    def __init__(self, backbone: Backbone) -> None:
        self._event_of: dict[str, str] = {}
        self.handled: dict[str, float] = {}
        self.failures = 0
        super().__init__(backbone.engine, {EVENT_TYPE: self._handle_event}, backbone.tracer)

    def _handle_event(self, message: IncomingMessage, session: Session) -> None:
        self._event_of[message.message_id] = message.event_id

    def process_message(self, delivery: Delivery) -> MessageResult:
        result = super().process_message(delivery)
        done = time.perf_counter()
        event_id = self._event_of.pop(delivery.message_id, None)
        if event_id is not None:
            self.handled[event_id] = done
        if not result.acknowledged:
            self.failures += 1
        return result


def _poller(backbone: Backbone, processor: MessageProcessor) -> QueuePoller:
    return QueuePoller(
        backbone.sqs,
        backbone.queue,
        processor,
        ConsumerOptions(
            wait_seconds=RECEIVE_WAIT_SECONDS,
            concurrency=CONSUMER_CONCURRENCY,
            retry_base_seconds=0,
        ),
    )


def consumer_pair(backbone: Backbone, count: int) -> tuple[Throughput, Throughput]:
    """(plain receive+delete, runtime consumer) taking `count` messages each from one queue.

    The queue is filled with enough envelopes for both; the two take a batch in turn, so each
    sees the same queue depth and the same moment's machine noise. The consumer is the
    runtime's `QueuePoller.poll_once`: receive 10 (all attributes), process them 4 at a time
    (consumer span, inbox insert on PostgreSQL, trivial handler, commit), delete the batch.
    """
    backbone.reset()
    backbone.fill_queue(2 * count + 2 * SQS_BATCH)
    processor = _TimedProcessor(backbone)
    poller = _poller(backbone, processor)
    base_seconds = consumer_seconds = 0.0
    plain = consumed = 0
    while plain < count or consumed < count:
        if plain < count:
            started = time.perf_counter()
            plain += _receive_delete(backbone)
            base_seconds += time.perf_counter() - started
        if consumed < count:
            started = time.perf_counter()
            consumed += len(poller.poll_once().deleted)
            consumer_seconds += time.perf_counter() - started
    if processor.failures:
        raise RuntimeError(f"{processor.failures} messages failed in the consumer")
    backbone.reset()
    return Throughput(plain, base_seconds), Throughput(consumed, consumer_seconds)


def _receive_delete(backbone: Backbone) -> int:
    """Plain boto3: one receive of up to 10 (all attributes) and one delete of the batch."""
    sqs, url = backbone.sqs, backbone.queue.url
    with suppress_instrumentation():
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=SQS_BATCH,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=backbone.queue.visibility_timeout or 30,
        ).get("Messages", [])
        if not messages:
            return 0
        reply = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    return len(reply.get("Successful", []))


# --- end to end -------------------------------------------------------------------------------


def _paced(count: int, interval: float, produce: Callable[[int], None]) -> None:
    started = time.perf_counter()
    for n in range(count):
        pause = started + n * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        produce(n)


def _wait_all(done: dict[str, float], wanted: dict[str, float], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while len(set(wanted) - set(done)) and time.perf_counter() < deadline:
        time.sleep(0.02)


def _latencies(start: dict[str, float], end: dict[str, float]) -> list[float]:
    missing = set(start) - set(end)
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(start)} events never arrived")
    return [end[key] - start[key] for key in start]


@dataclass(frozen=True)
class EndToEnd:
    """Seconds from each producer commit to the consumer having handled the event."""

    latencies: list[float]
    committed_ns: dict[str, int]
    """Wall clock (time.time_ns) of each event's commit, by event id: to place spans."""


def e2e_round(backbone: Backbone, count: int, interval: float) -> EndToEnd:
    """Commit -> handled for `count` events produced one every `interval` seconds."""
    backbone.reset()
    stop = threading.Event()
    relay = backbone.relay()
    waiter = commit_waiter(backbone.engine, notify_channel(SERVICE), stop)
    processor = _TimedProcessor(backbone)
    poller = _poller(backbone, processor)
    threads = [
        threading.Thread(target=run_relay, args=(relay, stop, waiter), name="bench-relay"),
        threading.Thread(target=poller.run, args=(stop,), name="bench-consumer"),
    ]
    for thread in threads:
        thread.start()
    committed: dict[str, float] = {}
    committed_ns: dict[str, int] = {}

    def produce(_n: int) -> None:
        with backbone.producing(), backbone.sessions() as session:
            with session.begin():
                envelope = backbone.record(session)
            committed[envelope.event_id] = time.perf_counter()
            committed_ns[envelope.event_id] = time.time_ns()

    try:
        time.sleep(0.5)  # the relay is listening and the consumer polling
        _paced(count, interval, produce)
        _wait_all(processor.handled, committed, timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        if isinstance(waiter, PostgresListener):
            waiter.close()
    if processor.failures:
        raise RuntimeError(f"{processor.failures} events failed in the consumer")
    backbone.reset()
    return EndToEnd(_latencies(committed, processor.handled), committed_ns)


def e2e_breakdown(
    spans: Sequence[Mapping[str, Any]], committed_ns: Mapping[str, int]
) -> dict[str, float]:
    """Median ms of each leg of commit -> handled, from the relay's and consumer's spans.

    Legs: commit -> the relay's publish span starts (NOTIFY, wake-up, SELECT ... SKIP LOCKED);
    the publish span (SNS publish_batch); its end -> the consumer span starts (SNS -> SQS ->
    long-polled receive); the consumer span (inbox insert, handler, commit).
    """
    publish: dict[str, tuple[int, int]] = {}
    consume: dict[str, tuple[int, int]] = {}
    for span in spans:
        event_id = span["attributes"].get("eventforge.event_id")
        if event_id not in committed_ns:
            continue
        window = (span["start_unix_nano"], span["end_unix_nano"])
        if span["kind"] == "PRODUCER":
            publish[event_id] = window
        elif span["kind"] == "CONSUMER":
            consume[event_id] = window
    legs: dict[str, list[float]] = {
        "commit_to_relay_publish": [],
        "relay_publish": [],
        "publish_to_consumer": [],
        "consumer_processing": [],
    }
    for event_id, commit in committed_ns.items():
        if event_id not in publish or event_id not in consume:
            continue
        (p0, p1), (c0, c1) = publish[event_id], consume[event_id]
        for leg, nanos in zip(legs, (p0 - commit, p1 - p0, c0 - p1, c1 - c0), strict=True):
            legs[leg].append(nanos / 1e6)
    return {leg: round(statistics.median(v), 2) for leg, v in legs.items() if v}


def emulator_round(backbone: Backbone, count: int, interval: float) -> list[float]:
    """Seconds from `sns.publish` (one by one) to `receive_message` handing the message over."""
    backbone.reset()
    sqs, url = backbone.sqs, backbone.queue.url
    stop = threading.Event()
    received: dict[str, float] = {}

    def receive() -> None:
        with suppress_instrumentation():
            while not stop.is_set():
                messages = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                now = time.perf_counter()
                for message in messages:
                    received[json.loads(message["Body"])["eventId"]] = now
                if messages:
                    sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )

    messages = [backbone.envelope_message() for _ in range(count)]
    published: dict[str, float] = {}

    def produce(n: int) -> None:
        event_id, body, attributes = messages[n]
        published[event_id] = time.perf_counter()
        backbone.sns.publish(
            TopicArn=backbone.topic_arn, Message=body, MessageAttributes=_attributes(attributes)
        )

    receiver = threading.Thread(target=receive, name="bench-receiver")
    receiver.start()
    try:
        time.sleep(0.5)
        with suppress_instrumentation():
            _paced(count, interval, produce)
        _wait_all(received, published, timeout=30)
    finally:
        stop.set()
        receiver.join()
    backbone.reset()
    return _latencies(published, received)


def describe() -> dict[str, Any]:
    """How the backbone benchmarks are set up, for results.json."""
    return {
        "topic": "orders (fan-out to orders-orders, filter order.placed)",
        "relay_batching": f"publish_batch of {SNS_BATCH_LIMIT} (relay and baseline)",
        "consumer_concurrency": CONSUMER_CONCURRENCY,
        "receive_wait_seconds": RECEIVE_WAIT_SECONDS,
    }
