"""Scheduled jobs on the worker side, on PostgreSQL and the emulator: a tick runs once however
often it is delivered and however many workers race on it; a failing job is retried and
dead-lettered; every job of the topology has its handler; the retention job."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from opentelemetry import trace

from eventforge.runtime.db import create_service_engine
from eventforge.runtime.messaging.consumer import QueueRef
from eventforge.runtime.messaging.jobs import (
    INBOX_RETENTION,
    OUTBOX_RETENTION,
    register_jobs,
    retention_job,
    standard_retention,
)
from eventforge.runtime.messaging.messages import Delivery, JobTick
from eventforge.runtime.messaging.processing import HandlerRegistry, MessageProcessor, Outcome
from eventforge.runtime.messaging.schema import inbox_table, outbox_table
from eventforge.runtime.migrations import upgrade
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.settings import ALL_SERVICES, ServiceName, Settings
from eventforge.runtime.telemetry import configure_telemetry, read_span_file
from eventforge.topology import TOPOLOGY
from tests.fixtures.emulator import TEST_PREFIX, queue_depth
from tests.runtime.test_consumer import make_consumer, poll_until, send, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SERVICE: ServiceName = "notifier"
JOB = TOPOLOGY.job("delivery-retries")
OTHER = TOPOLOGY.job("notifier-retention")
TICK = "2026-12-07T23:40:00Z"


class Runs:
    """A job's run: counts its calls, optionally slow or failing."""

    def __init__(self, *, sleep: float = 0.0, fail: bool = False) -> None:
        self.ticks: list[str] = []
        self.sleep = sleep
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, tick: JobTick) -> None:
        with self._lock:
            self.ticks.append(tick.tick)
        time.sleep(self.sleep)
        if self.fail:
            raise RuntimeError(f"{tick.job} refuses {tick.tick}")

    def registry(self) -> HandlerRegistry:
        return register_jobs(HandlerRegistry(), SERVICE, {JOB.name: self, OTHER.name: self})


@pytest.fixture(scope="module")
def module_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_service_engine(Settings(database_url=database_url), SERVICE)
    upgrade(engine, SERVICE)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(module_engine: sa.Engine) -> Iterator[sa.Engine]:
    def clean() -> None:
        with module_engine.begin() as connection:
            connection.execute(sa.delete(inbox_table))
            connection.execute(sa.delete(outbox_table))

    clean()
    yield module_engine
    clean()


@pytest.fixture
def jobs_queue(provisioned: ProvisionedTopology) -> QueueRef:
    return QueueRef(f"{TEST_PREFIX}-{JOB.queue}", provisioned.queues[JOB.queue].url)


def _delivery(n: int, tick: str = TICK, **attributes: str) -> Delivery:
    return Delivery(f"m-{n}", JOB.tick_body(tick), attributes, queue_name=JOB.queue)


def test_the_handlers_must_be_exactly_the_services_jobs() -> None:
    def run(tick: JobTick) -> None:
        del tick

    with pytest.raises(ValueError, match=r"missing \['notifier-retention'\]"):
        register_jobs(HandlerRegistry(), SERVICE, {JOB.name: run})
    with pytest.raises(ValueError, match=r"not jobs of notifier \['order-recovery'\]"):
        register_jobs(
            HandlerRegistry(), SERVICE, {JOB.name: run, OTHER.name: run, "order-recovery": run}
        )


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_every_job_of_a_service_has_its_handler_in_the_services_worker(
    service: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, aws_endpoint_url="http://127.0.0.1:9", aws_region="us-east-1"
    )
    worker = importlib.import_module(f"eventforge.{service}.entrypoints.worker").worker(settings)
    try:
        jobs = [job for job in TOPOLOGY.jobs if job.target == service]
        assert jobs, f"{service} has no jobs"
        for job in jobs:
            registered = worker.handlers.get(job.handler_key)
            assert registered is not None, f"{job.name} has no handler in the {service} worker"
            assert registered.name == job.name
            assert registered.own_transactions
    finally:
        worker.close()
        worker.engine.dispose()


@pytest.mark.integration
def test_a_tick_delivered_twice_runs_once(
    sqs: SQSClient, jobs_queue: QueueRef, engine: sa.Engine
) -> None:
    runs = Runs()
    send(sqs, jobs_queue, JOB.tick_body(TICK))
    send(sqs, jobs_queue, JOB.tick_body(TICK))
    consumer = make_consumer(sqs, jobs_queue, engine, runs.registry())

    total = poll_until(consumer, lambda t: len(t.deleted) == 2)

    assert sorted(r.outcome.value for r in total.results) == ["duplicate", "processed"]
    assert runs.ticks == [TICK]
    with engine.connect() as connection:
        [row] = connection.execute(sa.select(inbox_table)).all()
    assert (row.handler, row.event_type) == (JOB.name, JOB.handler_key)
    assert queue_depth(sqs, jobs_queue.url) == (0, 0)


@pytest.mark.integration
def test_two_workers_racing_on_one_tick_run_it_once(engine: sa.Engine, database_url: str) -> None:
    # Two workers: each its own engine and processor; the job runs long enough for them to meet.
    runs = Runs(sleep=0.5)
    other_engine = create_service_engine(Settings(database_url=database_url), SERVICE)
    processors = [
        MessageProcessor(e, runs.registry(), trace.NoOpTracer()) for e in (engine, other_engine)
    ]
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(
            target=lambda n=n: outcomes.append(processors[n].process_message(_delivery(n)).outcome)
        )
        for n in range(2)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other_engine.dispose()
    assert sorted(o.value for o in outcomes) == ["duplicate", "processed"]
    assert runs.ticks == [TICK]


@pytest.mark.integration
def test_two_consuming_workers_run_each_tick_once(
    sqs: SQSClient, jobs_queue: QueueRef, engine: sa.Engine, database_url: str
) -> None:
    runs = Runs(sleep=0.3)
    other_engine = create_service_engine(Settings(database_url=database_url), SERVICE)
    consumers = [make_consumer(sqs, jobs_queue, e, runs.registry()) for e in (engine, other_engine)]
    ticks = ["2026-12-07T23:41:00Z", "2026-12-07T23:42:00Z"]
    for tick in ticks:  # each tick delivered twice, as at-least-once delivery may
        send(sqs, jobs_queue, JOB.tick_body(tick))
        send(sqs, jobs_queue, JOB.tick_body(tick))
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in consumers]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: queue_depth(sqs, jobs_queue.url) == (0, 0) and len(runs.ticks) >= 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        other_engine.dispose()
    assert sorted(runs.ticks) == ticks


@pytest.mark.integration
def test_a_failing_job_is_retried_then_dead_lettered(
    sqs: SQSClient, jobs_queue: QueueRef, engine: sa.Engine, provisioned: ProvisionedTopology
) -> None:
    runs = Runs(fail=True)
    send(sqs, jobs_queue, JOB.tick_body(TICK))
    consumer = make_consumer(sqs, jobs_queue, engine, runs.registry())
    dlq_url = provisioned.queues[JOB.queue].dlq_url
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    try:
        wait_for(lambda: queue_depth(sqs, dlq_url)[0] == 1, timeout=30)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert runs.ticks == [TICK] * TOPOLOGY.queue(JOB.queue).max_receives
    with engine.connect() as connection:
        assert connection.execute(sa.select(inbox_table)).all() == []  # may run again, redriven
    [dead] = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)["Messages"]
    assert dead["Body"] == JOB.tick_body(TICK)


@pytest.mark.integration
def test_a_tick_of_a_job_without_handler_fails_rather_than_vanish(engine: sa.Engine) -> None:
    processor = MessageProcessor(engine, HandlerRegistry(), trace.NoOpTracer())
    result = processor.process_message(_delivery(1))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert "no handler for job:delivery-retries" in result.error


@pytest.mark.integration
def test_a_tick_starts_its_own_trace_or_continues_the_one_it_carries(
    engine: sa.Engine, tmp_path: Path
) -> None:
    spans_path = tmp_path / "spans.jsonl"
    telemetry = configure_telemetry(
        SERVICE, Settings(data_dir=tmp_path, span_file=spans_path), set_global=False
    )
    processor = MessageProcessor(engine, Runs().registry(), telemetry.tracer)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    try:
        processor.process_message(_delivery(1))  # as EventBridge Scheduler sends it
        processor.process_message(
            _delivery(2, "2026-12-07T23:41:07.250Z", traceparent=traceparent, request_id="req-job")
        )
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    first, second = read_span_file(spans_path)
    for span in (first, second):
        assert span["name"] == f"{JOB.queue} process"
        assert span["kind"] == "CONSUMER"
        assert span["attributes"]["messaging.operation.type"] == "process"
        assert span["attributes"]["eventforge.job.name"] == JOB.name
        assert span["attributes"]["eventforge.outcome"] == "processed"
    assert first["attributes"]["eventforge.job.tick"] == TICK
    assert first["parent_span_id"] is None
    assert first["request_id"]  # generated: the cloud's tick carries none
    assert second["attributes"]["eventforge.job.tick"] == "2026-12-07T23:41:07.250Z"
    assert second["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert second["request_id"] == "req-job"


@pytest.mark.integration
def test_the_retention_job_deletes_only_what_is_past_retention(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for event_id, age in (("old", INBOX_RETENTION), ("new", timedelta(0))):
            connection.execute(
                sa.insert(inbox_table).values(
                    event_id=event_id,
                    handler="h",
                    event_type="t",
                    processed_at=now - age - timedelta(minutes=1),
                )
            )
        for event_id, published in (
            ("published-old", now - OUTBOX_RETENTION - timedelta(minutes=1)),
            ("published-new", now),
            ("unpublished", None),
        ):
            connection.execute(
                sa.insert(outbox_table).values(
                    event_id=event_id,
                    event_type="t",
                    topic="notifier",
                    subject="s",
                    body="{}",
                    attributes={},
                    created_at=now - timedelta(days=30),
                    published_at=published,
                )
            )
    run = retention_job({**standard_retention(engine), "extra": lambda: 2})
    tick = JobTick(OTHER.name, TICK, datetime(2026, 12, 7, 23, 40, tzinfo=UTC))

    assert run(tick) == {"inbox rows": 1, "published outbox rows": 1, "extra": 2}
    assert run(tick) == {"inbox rows": 0, "published outbox rows": 0, "extra": 2}
    with engine.connect() as connection:
        assert sorted(connection.scalars(sa.select(inbox_table.c.event_id))) == ["new"]
        assert sorted(connection.scalars(sa.select(outbox_table.c.event_id))) == [
            "published-new",
            "unpublished",
        ]
