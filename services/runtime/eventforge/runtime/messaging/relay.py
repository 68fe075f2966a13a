"""The outbox relay: publish committed outbox rows to SNS, continuing each producer's trace.

Every `report_seconds` (a minute), draining or not, the relay logs its backlog as JSON fields
`outbox_backlog` and `outbox_oldest_age_seconds`: the cloud stacks alarm on that line (a
CloudWatch Logs metric filter). Published rows are deleted by the service's retention job
(`messaging.jobs`), not here. The same numbers feed the gauges
`eventforge.outbox.backlog` and `eventforge.outbox.oldest_age`, sampled every
`OUTBOX_SAMPLE_SECONDS` once a metrics reader collects them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError

from eventforge.runtime.aws import BROKER_ERRORS
from eventforge.runtime.backoff import Backoff
from eventforge.runtime.db import is_postgres
from eventforge.runtime.messaging.schema import outbox_table as outbox
from eventforge.runtime.metrics import OUTBOX_SAMPLE_SECONDS, Metrics, process_metrics
from eventforge.topology import TOPOLOGY

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishBatchRequestEntryTypeDef

log = logging.getLogger("eventforge.relay")

SNS_BATCH_LIMIT = 10


# The relay's statements, built once and executed with parameters.
_UNPUBLISHED = (
    select(outbox)
    .where(outbox.c.published_at.is_(None))
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)
_UNPUBLISHED_LOCKED = _UNPUBLISHED.with_for_update(skip_locked=True)
_MARK_PUBLISHED = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("now"), attempts=outbox.c.attempts + 1, last_error=None)
)
_MARK_FAILED = (
    update(outbox)
    .where(outbox.c.id == bindparam("id"))
    .values(attempts=outbox.c.attempts + 1, last_error=bindparam("error"))
)


@dataclass(frozen=True)
class Backlog:
    """Unpublished rows and the age of the oldest one, in seconds (0 when empty)."""

    size: int
    oldest_age_seconds: float


class OutboxRelay:
    """Claims unpublished outbox rows in batches (SKIP LOCKED) and publishes them with SNS."""

    def __init__(
        self,
        *,
        engine: Engine,
        sns: SNSClient,
        topic_arns: Mapping[str, str],
        tracer: trace.Tracer,
        batch_size: int = SNS_BATCH_LIMIT,
        service: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.sns = sns
        self.topic_arns = topic_arns
        self.tracer = tracer
        self.batch_size = batch_size
        self.service = service or _publisher_of(topic_arns)
        """The service whose outbox this is (the `eventforge.service` of its gauges)."""
        self.metrics = metrics or process_metrics()

    def publish_batch(self) -> int:
        """Publish one batch of the oldest unpublished rows; returns how many were published.

        Broker errors propagate after the transaction rolls back, so the rows stay unpublished.
        """
        query = _UNPUBLISHED_LOCKED if is_postgres(self.engine) else _UNPUBLISHED
        with self.engine.begin() as connection:
            rows = connection.execute(query, {"limit": self.batch_size}).mappings().all()
            if not rows:
                return 0
            published, failed = self._publish(rows)
            now = datetime.now(UTC)
            if published:
                connection.execute(_MARK_PUBLISHED, {"ids": published, "now": now})
            for row_id, error in failed.items():
                connection.execute(_MARK_FAILED, {"id": row_id, "error": error})
        for row_id, error in failed.items():
            log.warning("outbox row %s not published: %s", row_id, error)
        return len(published)

    def _publish(self, rows: Sequence[RowMapping]) -> tuple[list[int], dict[int, str]]:
        published: list[int] = []
        failed: dict[int, str] = {}
        for topic in sorted({row["topic"] for row in rows}):
            chunk = [row for row in rows if row["topic"] == topic]
            done, errors = self._publish_to(topic, chunk)
            published += done
            failed.update(errors)
        return published, failed

    def _publish_to(
        self, topic: str, rows: Sequence[RowMapping]
    ) -> tuple[list[int], dict[int, str]]:
        arn = self.topic_arns[topic]
        spans = {row["id"]: self._start_span(arn, row) for row in rows}
        entries = [self._entry(row, spans[row["id"]]) for row in rows]
        try:
            # The PRODUCER spans stand for this call; botocore's own span would be a stray root.
            with suppress_instrumentation():
                response = self.sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        except BROKER_ERRORS as error:
            for span in spans.values():
                span.set_status(trace.StatusCode.ERROR, str(error))
                span.end()
            raise
        published = [int(ok["Id"]) for ok in response.get("Successful", [])]
        failed = {
            int(bad["Id"]): f"{bad['Code']}: {bad.get('Message', '')}"
            for bad in response.get("Failed", [])
        }
        for row_id, span in spans.items():
            if row_id in failed:
                span.set_status(trace.StatusCode.ERROR, failed[row_id])
            span.end()
        return published, failed

    def _start_span(self, arn: str, row: RowMapping) -> trace.Span:
        producer = propagate.extract(row["attributes"])
        return self.tracer.start_span(
            f"{arn.rsplit(':', 1)[-1]} publish",
            context=producer,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "aws_sns",
                "messaging.operation.type": "publish",
                "messaging.destination.name": arn,
                "eventforge.event_id": row["event_id"],
                "eventforge.event_type": row["event_type"],
                "request_id": row["request_id"] or "",
            },
        )

    @staticmethod
    def _entry(row: RowMapping, span: trace.Span) -> PublishBatchRequestEntryTypeDef:
        attributes = dict(row["attributes"])
        # Consumers continue from the publish span, which continues the producer's span.
        propagate.inject(attributes, context=trace.set_span_in_context(span))
        return {
            "Id": str(row["id"]),
            "Message": row["body"],
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value}
                for name, value in attributes.items()
                if value
            },
        }

    def backlog(self) -> Backlog:
        """How many rows wait to be published, and for how long the oldest has waited."""
        query = select(func.count(), func.min(outbox.c.created_at)).where(
            outbox.c.published_at.is_(None)
        )
        with self.engine.connect() as connection:
            size, oldest = connection.execute(query).one()
        if oldest is None:
            return Backlog(0, 0.0)
        if oldest.tzinfo is None:  # SQLite returns naive datetimes
            oldest = oldest.replace(tzinfo=UTC)
        return Backlog(int(size), (datetime.now(UTC) - oldest).total_seconds())

    def measure_backlog(self) -> Backlog:
        """`backlog()`, also set on the outbox gauges."""
        backlog = self.backlog()
        self.metrics.outbox(
            self.service, size=backlog.size, oldest_age_seconds=backlog.oldest_age_seconds
        )
        return backlog

    @property
    def backlog_wanted(self) -> bool:
        """Whether a metrics reader collects the outbox gauges."""
        return self.metrics.outbox_backlog.observed


def run_relay(
    relay: OutboxRelay,
    stop: threading.Event,
    wait_for_commit: Callable[[float], None],
    *,
    poll_seconds: float = 1.0,
    report_seconds: float = 60.0,
) -> None:
    """Publish until `stop` is set: drain while rows remain, then wait for a commit or a tick.

    `wait_for_commit(timeout)` returns early when a producer commits (LISTEN/NOTIFY) or just
    sleeps (polling). The backlog's log line is written on its schedule while draining too: a
    growing backlog is when its age matters.
    """
    backoff = Backoff()
    next_report = 0.0
    next_sample = 0.0
    while not stop.is_set():
        try:
            published = relay.publish_batch()
            backoff.reset()
        except (*BROKER_ERRORS, SQLAlchemyError) as error:
            delay = backoff.next_delay()
            log.warning("publishing failed (%s); retrying in %.1fs", error, delay)
            stop.wait(delay)
            continue
        now = time.monotonic()
        if now >= next_report:
            try:
                _report_backlog(relay)
            except SQLAlchemyError as error:
                log.warning("measuring the outbox backlog failed: %s", error)
            next_report = now + report_seconds
            next_sample = now + OUTBOX_SAMPLE_SECONDS
        elif now >= next_sample and relay.backlog_wanted:
            next_sample = now + OUTBOX_SAMPLE_SECONDS
            try:
                with suppress_instrumentation():  # a span per sample of a gauge is noise
                    relay.measure_backlog()
            except SQLAlchemyError as error:
                log.warning("measuring the outbox backlog failed: %s", error)
        if published == relay.batch_size:
            continue
        wait_for_commit(poll_seconds)


def _publisher_of(topic_arns: Mapping[str, str]) -> str:
    """The service that publishes to these (logical) topics, by the topology."""
    publishers = {t.publisher for t in TOPOLOGY.topics if t.name in topic_arns and t.publisher}
    return publishers.pop() if len(publishers) == 1 else "unknown"


def _report_backlog(relay: OutboxRelay) -> None:
    backlog = relay.measure_backlog()
    log.info(
        "outbox backlog %d (oldest %.1fs)",
        backlog.size,
        backlog.oldest_age_seconds,
        extra={
            "outbox_backlog": backlog.size,
            "outbox_oldest_age_seconds": round(backlog.oldest_age_seconds, 3),
        },
    )
