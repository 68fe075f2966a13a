"""The queue worker of every service: long-poll its SQS queues and process what arrives.

One `QueuePoller` per queue, each in its own thread under `Consumer.run`. A poller receives a
batch (long polling, up to 10 messages, every attribute), processes its messages concurrently on
a bounded thread pool with `MessageProcessor.process_message` (`processing.py`: inbox, handler,
trace context), then

- deletes the acknowledged ones with one `DeleteMessageBatch`;
- leaves the failed and unparseable ones in the queue, invisible for an exponential, jittered
  backoff on their receive count, so retries spread out until the queue's redrive policy moves
  them to the DLQ; one poison message never fails its batch;
- while a handler runs, extends its messages' visibility every half visibility timeout, so slow
  work is not redelivered to another worker meanwhile.

`run(stop)` returns once `stop` is set and the in-flight batch is finished (messages received
after `stop` was set are released at once, not processed). Errors talking to SQS are logged and
retried with a capped backoff; nothing a message does can end the loop. When a batch had
failures and the consumer's own dependencies (its database, probed with `ready`) do not answer,
nothing more is received until they do: every receive counts towards a message's redrive limit,
so an outage longer than the retry schedule would otherwise dead-letter what arrives meanwhile.

Metrics (`eventforge.runtime.metrics`): besides what the processor counts per message, a poller
counts the failed messages on their last receive (`eventforge.messaging.dead_lettered`, the
queue's maxReceiveCount read with its visibility timeout, in the one GetQueueAttributes a poller
makes at start), reports the age of the oldest message of each receive
(`eventforge.queue.oldest_age`, from the messages' SentTimestamp) and, once a reader collects
them, samples its queue's depth every `QUEUE_SAMPLE_SECONDS` (`eventforge.queue.depth`): no SQS
call per message.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.propagators.textmap import TextMapPropagator
from sqlalchemy.orm import Session, sessionmaker

from eventforge.runtime.messaging.messages import Delivery
from eventforge.runtime.messaging.processing import (
    Handler,
    HandlerRegistry,
    MessageProcessor,
    MessageResult,
    Outcome,
)
from eventforge.runtime.metrics import QUEUE_SAMPLE_SECONDS, Metrics
from eventforge.topology import TOPOLOGY, Topology

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef, ReceiveMessageRequestTypeDef

    from eventforge.runtime.settings import ServiceName

log = logging.getLogger(__name__)

T = TypeVar("T")

SQS_BATCH_LIMIT = 10
MAX_VISIBILITY_SECONDS = 12 * 60 * 60
READY_PROBE_CAP_SECONDS = 5.0
"""Longest pause between two probes of unreachable dependencies."""


@dataclass(frozen=True)
class QueueRef:
    """A queue to consume: its physical name, URL and (optionally) visibility timeout."""

    name: str
    url: str
    visibility_timeout: int | None = None
    """Seconds a received message stays hidden, asked for on every receive; None: the queue's
    own setting, looked up once (with its redrive policy's maxReceiveCount)."""
    max_receives: int | None = None
    """Receives before the queue's redrive policy dead-letters a message, when known up front
    (with `visibility_timeout` given); otherwise read from the queue with its visibility."""


@dataclass(frozen=True)
class ConsumerOptions:
    wait_seconds: int = 20
    """Long-polling wait of each receive (0..20)."""
    max_messages: int = 10
    """Messages per receive (1..10)."""
    concurrency: int = 4
    """Messages of one batch processed at once, per queue."""
    retry_base_seconds: float = 1.0
    """Hidden time after a first failed attempt, doubled per receive (0: retry at once)."""
    retry_cap_seconds: float = 300.0
    error_backoff_seconds: float = 1.0
    """First pause after a failed receive, doubled per further failure up to the cap."""
    error_backoff_cap_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.wait_seconds <= 20:
            raise ValueError("wait_seconds must be 0..20")
        if not 1 <= self.max_messages <= SQS_BATCH_LIMIT:
            raise ValueError("max_messages must be 1..10")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass(frozen=True)
class BatchResult:
    """What one receive (or one round over several queues) did."""

    received: int = 0
    results: tuple[MessageResult, ...] = ()
    deleted: tuple[str, ...] = ()
    """Ids of the messages deleted from their queue."""
    released: int = 0
    """Messages made visible again unprocessed because the consumer was stopping."""

    @property
    def failed(self) -> tuple[MessageResult, ...]:
        return tuple(r for r in self.results if not r.acknowledged)

    def __add__(self, other: BatchResult) -> BatchResult:
        return BatchResult(
            received=self.received + other.received,
            results=self.results + other.results,
            deleted=self.deleted + other.deleted,
            released=self.released + other.released,
        )


def retry_delay(
    receive_count: int, *, base: float, cap: float, rng: random.Random | None = None
) -> int:
    """Seconds to hide a failed message: base·2^(receives-1), capped, jittered into [d/2, d]."""
    if base <= 0 or cap <= 0:
        return 0
    delay = min(base * 2.0 ** min(max(receive_count, 1) - 1, 32), cap)
    jittered = (rng or random.Random()).uniform(delay / 2, delay)  # noqa: S311 (jitter)
    return min(round(jittered), MAX_VISIBILITY_SECONDS)


def service_queues(
    sqs: SQSClient, service: ServiceName, name_prefix: str, topology: Topology = TOPOLOGY
) -> list[QueueRef]:
    """The queues `service` consumes, with their URLs (one GetQueueUrl each)."""
    resolved = topology.resolve(name_prefix)
    names = [resolved.queues[q.name].name for q in topology.queues_consumed_by(service)]
    return [QueueRef(name, sqs.get_queue_url(QueueName=name)["QueueUrl"]) for name in names]


class QueuePoller:
    """Receives, processes and acknowledges the messages of one queue."""

    def __init__(
        self,
        sqs: SQSClient,
        queue: QueueRef,
        processor: MessageProcessor,
        options: ConsumerOptions | None = None,
        *,
        rng: random.Random | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue = queue
        self.processor = processor
        self.options = options or ConsumerOptions()
        self.ready = ready
        """Probe of the handlers' own dependencies (the database): True when they answer."""
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self._visibility = queue.visibility_timeout
        self._max_receives = queue.max_receives
        self.metrics: Metrics = processor.metrics
        self._next_depth_sample = 0.0

    def poll_once(self) -> BatchResult:
        """One receive and its processing; raises if SQS cannot be reached."""
        with self._pool() as pool:
            return self._poll(pool, None)

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set, then finish the batch in hand and return."""
        initial = self.options.error_backoff_seconds
        delay = initial
        log.info("consuming %s", self.queue.name, extra={"queue": self.queue.name})
        with self._pool() as pool:
            while not stop.is_set():
                self._sample_depth()
                try:
                    result = self._poll(pool, stop)
                except Exception:
                    log.exception(
                        "polling %s failed; retrying in %.1f s",
                        self.queue.name,
                        delay,
                        extra={"queue": self.queue.name},
                    )
                    stop.wait(self._rng.uniform(delay / 2, delay))
                    delay = min(delay * 2, self.options.error_backoff_cap_seconds)
                else:
                    delay = initial
                    if result.failed:
                        self._wait_until_ready(stop)
        log.info("stopped consuming %s", self.queue.name, extra={"queue": self.queue.name})

    def _wait_until_ready(self, stop: threading.Event) -> None:
        """Receive nothing until the dependencies answer (or `stop`), probing with backoff."""
        if self._is_ready():
            return
        extra = {"queue": self.queue.name}
        log.warning("dependencies unreachable: not receiving from %s", self.queue.name, extra=extra)
        delay = self.options.error_backoff_seconds
        while not stop.wait(self._rng.uniform(delay / 2, delay)):
            if self._is_ready():
                log.info("dependencies reachable: receiving from %s", self.queue.name, extra=extra)
                return
            delay = min(delay * 2, READY_PROBE_CAP_SECONDS)

    def _is_ready(self) -> bool:
        if self.ready is None:
            return True
        try:
            return self.ready()
        except Exception:
            log.exception("probing the dependencies of %s failed", self.queue.name)
            return False

    def _sample_depth(self) -> None:
        """The queue's depth for `eventforge.queue.depth`, at most every QUEUE_SAMPLE_SECONDS and
        only while a reader collects the gauge; a failure is logged, never raised."""
        if not self.metrics.queue_depth.observed or time.monotonic() < self._next_depth_sample:
            return
        self._next_depth_sample = time.monotonic() + QUEUE_SAMPLE_SECONDS
        try:
            with suppress_instrumentation():  # a span a minute for a gauge is noise
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=self.queue.url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )["Attributes"]
        except Exception as error:
            log.warning("sampling the depth of %s failed: %s", self.queue.name, error)
            return
        self.metrics.queue_sampled(
            self.queue.name,
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=self.options.concurrency, thread_name_prefix=f"consume-{self.queue.name}"
        )

    def _poll(self, pool: ThreadPoolExecutor, stop: threading.Event | None) -> BatchResult:
        visibility = self._visibility_timeout()
        messages = self._receive()
        if not messages:
            self.metrics.queue_received(self.queue.name, 0.0)
            return BatchResult()
        deliveries = [Delivery.from_sqs(m, self.queue.name) for m in messages]
        self.metrics.queue_received(self.queue.name, _oldest_age_seconds(deliveries))
        if stop is not None and stop.is_set():
            self._change_visibility((d, 0) for d in deliveries)
            return BatchResult(received=len(deliveries), released=len(deliveries))
        results = self._process(pool, deliveries, visibility)
        done = [d for d, r in zip(deliveries, results, strict=True) if r.acknowledged]
        deleted = self._delete(done)
        self._change_visibility(
            (d, self._retry_delay(d))
            for d, r in zip(deliveries, results, strict=True)
            if not r.acknowledged
        )
        self._count_dead_letters(results)
        return BatchResult(received=len(deliveries), results=tuple(results), deleted=deleted)

    def _count_dead_letters(self, results: Sequence[MessageResult]) -> None:
        """Failures on a message's last receive: the redrive policy moves it to the DLQ next."""
        limit = self._max_receives
        if limit is None:
            return
        last = sum(1 for r in results if not r.acknowledged and r.receive_count >= limit)
        if last:
            self.metrics.message_dead_lettered(self.queue.name, last)
            log.warning(
                "%d message(s) of %s failed on their last receive (%d): bound for the DLQ",
                last,
                self.queue.name,
                limit,
                extra={"queue": self.queue.name},
            )

    def _visibility_timeout(self) -> int:
        if self._visibility is None:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            )["Attributes"]
            self._visibility = int(attributes["VisibilityTimeout"])
            if self._max_receives is None:
                self._max_receives = _max_receives(attributes.get("RedrivePolicy"))
        return self._visibility

    def _receive(self) -> list[MessageTypeDef]:
        request: ReceiveMessageRequestTypeDef = {
            "QueueUrl": self.queue.url,
            "MaxNumberOfMessages": self.options.max_messages,
            "WaitTimeSeconds": self.options.wait_seconds,
            "MessageAttributeNames": ["All"],
            "AttributeNames": ["All"],
        }
        if self.queue.visibility_timeout is not None:
            request["VisibilityTimeout"] = self.queue.visibility_timeout
        return self.sqs.receive_message(**request).get("Messages", [])

    def _process(
        self, pool: ThreadPoolExecutor, deliveries: Sequence[Delivery], visibility: int
    ) -> list[MessageResult]:
        futures = [pool.submit(self.processor.process_message, d) for d in deliveries]
        running: dict[Future[MessageResult], Delivery] = dict(zip(futures, deliveries, strict=True))
        # Heartbeat: every half visibility timeout, hide the unfinished ones for another one.
        interval = max(visibility / 2, 0.5) if visibility > 0 else None
        pending: set[Future[MessageResult]] = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=interval)
            if pending:
                self._change_visibility((running[f], visibility) for f in pending)
        return [_result_of(f, d) for f, d in running.items()]

    def _retry_delay(self, delivery: Delivery) -> int:
        options = self.options
        return retry_delay(
            delivery.receive_count,
            base=options.retry_base_seconds,
            cap=options.retry_cap_seconds,
            rng=self._rng,
        )

    def _delete(self, deliveries: Sequence[Delivery]) -> tuple[str, ...]:
        deleted: list[str] = []
        for chunk in _chunks([d for d in deliveries if d.receipt_handle], SQS_BATCH_LIMIT):
            entries = {str(i): d for i, d in enumerate(chunk)}
            try:
                reply = self.sqs.delete_message_batch(
                    QueueUrl=self.queue.url,
                    Entries=[
                        {"Id": i, "ReceiptHandle": d.receipt_handle or ""}
                        for i, d in entries.items()
                    ],
                )
            except Exception:
                # Redelivered later and acknowledged then as a duplicate.
                log.exception("deleting from %s failed", self.queue.name)
                continue
            deleted += [entries[s["Id"]].message_id for s in reply.get("Successful", [])]
            _log_failed_entries("delete", self.queue.name, entries, reply.get("Failed", []))
        return tuple(deleted)

    def _change_visibility(self, changes: Iterable[tuple[Delivery, int]]) -> None:
        wanted = [(d, seconds) for d, seconds in changes if d.receipt_handle]
        for chunk in _chunks(wanted, SQS_BATCH_LIMIT):
            entries = {str(i): change for i, change in enumerate(chunk)}
            try:
                reply = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue.url,
                    Entries=[
                        {"Id": i, "ReceiptHandle": d.receipt_handle or "", "VisibilityTimeout": s}
                        for i, (d, s) in entries.items()
                    ],
                )
            except Exception:
                log.exception("changing visibility on %s failed", self.queue.name)
                continue
            by_id = {i: d for i, (d, _s) in entries.items()}
            _log_failed_entries(
                "visibility change", self.queue.name, by_id, reply.get("Failed", [])
            )


class Consumer:
    """A service's queue worker: one polling thread per queue, one shared message processor."""

    def __init__(
        self,
        sqs: SQSClient,
        queues: Sequence[QueueRef],
        *,
        sessions: sa.Engine | sessionmaker[Session],
        handlers: HandlerRegistry | Mapping[str, Handler],
        tracer: trace.Tracer,
        options: ConsumerOptions | None = None,
        propagator: TextMapPropagator | None = None,
        rng: random.Random | None = None,
        ready: Callable[[], bool] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.processor = MessageProcessor(
            sessions, handlers, tracer, propagator=propagator, metrics=metrics
        )
        self.pollers = tuple(
            QueuePoller(sqs, queue, self.processor, options, rng=rng, ready=ready)
            for queue in queues
        )

    def poll_once(self) -> BatchResult:
        """One receive on each queue in turn, with its processing."""
        total = BatchResult()
        for poller in self.pollers:
            total += poller.poll_once()
        return total

    def run(self, stop: threading.Event) -> None:
        """Consume every queue until `stop` is set; returns when each has finished its batch."""
        threads = [
            threading.Thread(
                target=poller.run, args=(stop,), name=f"poll-{poller.queue.name}", daemon=True
            )
            for poller in self.pollers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _result_of(future: Future[MessageResult], delivery: Delivery) -> MessageResult:
    try:
        return future.result()
    except Exception as error:  # process_message does not raise; this is a last resort
        log.exception("processing %s crashed", delivery.message_id)
        return MessageResult(
            delivery.message_id,
            delivery.queue_name,
            Outcome.FAILED,
            delivery.receive_count,
            repr(error),
        )


def _oldest_age_seconds(deliveries: Sequence[Delivery]) -> float:
    """Seconds since the earliest SentTimestamp among `deliveries` (0 without any)."""
    sent = [d.sent_timestamp_ms for d in deliveries if d.sent_timestamp_ms is not None]
    if not sent:
        return 0.0
    return max(time.time() - min(sent) / 1000, 0.0)


def _max_receives(redrive_policy: str | None) -> int | None:
    """The maxReceiveCount of a queue's RedrivePolicy attribute (None without a policy)."""
    if not redrive_policy:
        return None
    try:
        return int(json.loads(redrive_policy)["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable redrive policy %r", redrive_policy)
        return None


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _log_failed_entries(
    action: str, queue: str, entries: Mapping[str, Delivery], failed: Sequence[Any]
) -> None:
    for failure in failed:
        delivery = entries.get(str(failure.get("Id")))
        log.warning(
            "%s of %s on %s failed: %s",
            action,
            delivery.message_id if delivery else failure.get("Id"),
            queue,
            failure.get("Message") or failure.get("Code"),
            extra={"queue": queue},
        )
