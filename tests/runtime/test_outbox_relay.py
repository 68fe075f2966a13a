"""The transactional outbox and its relay, against PostgreSQL and the AWS emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from sqlalchemy import Engine, delete, func, select

from eventforge.events.v1 import events_pb2
from eventforge.runtime import aws
from eventforge.runtime.context import request_context
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.messaging.envelope import decode
from eventforge.runtime.messaging.outbox import notify_channel, purge_published, record_event
from eventforge.runtime.messaging.relay import OutboxRelay, run_relay
from eventforge.runtime.messaging.schema import outbox_table
from eventforge.runtime.messaging.wakeup import PostgresListener, commit_waiter
from eventforge.runtime.migrations import upgrade
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.settings import ServiceName, Settings
from eventforge.runtime.telemetry import Telemetry, configure_telemetry, read_span_file
from tests.fixtures.network import TcpProxy

pytestmark = pytest.mark.integration

SERVICE: ServiceName = "orders"


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_service_engine(Settings(database_url=database_url), SERVICE)
    upgrade(engine, SERVICE)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_outbox(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(delete(outbox_table))
    return engine


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Telemetry]:
    telemetry = configure_telemetry("orders", Settings(data_dir=tmp_path), set_global=False)
    yield telemetry
    telemetry.shutdown()


def _relay(
    engine: Engine, settings: Settings, provisioned: ProvisionedTopology, telemetry: Telemetry
) -> OutboxRelay:
    return OutboxRelay(
        engine=engine,
        sns=aws.sns(settings),
        topic_arns={"orders": provisioned.topic_arns["orders"]},
        tracer=telemetry.tracer,
    )


def _place(engine: Engine, order_id: str, *, commit: bool = True) -> str:
    with session_factory(engine)() as session:
        envelope = record_event(
            session, SERVICE, events_pb2.OrderPlaced(order_id=order_id), subject=order_id
        )
        if commit:
            session.commit()
        else:
            session.rollback()
    return envelope.event_id


def _drain(settings: Settings, queue_url: str, expect: int, timeout: float = 10) -> list[Any]:
    sqs = aws.sqs(settings)
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1 if len(messages) < expect else 0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        messages += batch
        if len(messages) >= expect and not batch:
            break
    return messages


def test_rollback_publishes_nothing_commit_publishes_once(
    clean_outbox: Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
    telemetry: Telemetry,
) -> None:
    relay = _relay(clean_outbox, aws_settings, provisioned, telemetry)
    _place(clean_outbox, "rolled-back", commit=False)
    assert relay.publish_batch() == 0
    event_id = _place(clean_outbox, "committed")
    assert relay.publish_batch() == 1
    assert relay.publish_batch() == 0
    messages = _drain(aws_settings, provisioned.queues["orders-orders"].url, expect=1)
    assert [decode(m["Body"]).event_id for m in messages] == [event_id]
    attributes = messages[0]["MessageAttributes"]
    assert attributes["event_type"]["StringValue"] == "order.placed"
    assert "traceparent" in attributes
    assert relay.backlog().size == 0


def test_broker_outage_keeps_rows_until_published_once(
    clean_outbox: Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
    telemetry: Telemetry,
    tcp_proxy: type[TcpProxy],
) -> None:
    port = int((aws_settings.aws_endpoint_url or "").rsplit(":", 1)[1])
    proxy = tcp_proxy("127.0.0.1", port)
    proxy.start()
    through_proxy = aws_settings.model_copy(
        update={"aws_endpoint_url": f"http://127.0.0.1:{proxy.port}"}
    )
    relay = _relay(clean_outbox, through_proxy, provisioned, telemetry)
    stop = threading.Event()
    worker = threading.Thread(
        target=run_relay, args=(relay, stop, lambda timeout: stop.wait(0.05)), daemon=True
    )
    proxy.cut()
    worker.start()
    written = [_place(clean_outbox, f"outage-{i}") for i in range(15)]
    time.sleep(1.0)
    assert relay.backlog().size == 15
    assert relay.backlog().oldest_age_seconds > 0.5
    proxy.start()
    messages = _drain(aws_settings, provisioned.queues["orders-orders"].url, expect=15, timeout=40)
    stop.set()
    worker.join(10)
    assert sorted(decode(m["Body"]).event_id for m in messages) == sorted(written)
    assert relay.backlog().size == 0


def test_concurrent_relays_publish_each_row_exactly_once(
    clean_outbox: Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
    telemetry: Telemetry,
) -> None:
    written = {_place(clean_outbox, f"many-{i}") for i in range(40)}
    relays = [_relay(clean_outbox, aws_settings, provisioned, telemetry) for _ in range(3)]

    def drain(relay: OutboxRelay) -> None:
        while relay.publish_batch():
            pass

    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    messages = _drain(aws_settings, provisioned.queues["orders-orders"].url, expect=40, timeout=30)
    published = [decode(m["Body"]).event_id for m in messages]
    assert sorted(published) == sorted(written)
    with clean_outbox.connect() as connection:
        attempts = connection.execute(select(func.max(outbox_table.c.attempts))).scalar_one()
    assert attempts == 1


def test_notify_wakes_the_relay_long_before_its_poll_interval(
    clean_outbox: Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
    telemetry: Telemetry,
) -> None:
    relay = _relay(clean_outbox, aws_settings, provisioned, telemetry)
    stop = threading.Event()
    waiter = commit_waiter(clean_outbox, notify_channel(SERVICE), stop)
    worker = threading.Thread(
        target=run_relay, args=(relay, stop, waiter), kwargs={"poll_seconds": 60}, daemon=True
    )
    worker.start()
    time.sleep(0.5)  # the relay is now waiting for a notification
    started = time.monotonic()
    _place(clean_outbox, "prompt")
    messages = _drain(aws_settings, provisioned.queues["orders-orders"].url, expect=1, timeout=10)
    elapsed = time.monotonic() - started
    stop.set()
    worker.join(5)
    assert len(messages) == 1
    assert elapsed < 5, f"relay woke after {elapsed:.1f}s"


def test_relays_are_notified_after_a_commit_and_not_after_a_rollback(
    clean_outbox: Engine,
) -> None:
    stop = threading.Event()
    listener = commit_waiter(clean_outbox, notify_channel(SERVICE), stop)
    assert isinstance(listener, PostgresListener)
    try:
        listener(0.01)  # LISTEN before anything is written
        _place(clean_outbox, "rolled-back", commit=False)
        waited = time.monotonic()
        listener(1.0)
        assert time.monotonic() - waited >= 0.9, "a rolled back transaction notified"

        _place(clean_outbox, "committed")
        waited = time.monotonic()
        listener(10.0)
        assert time.monotonic() - waited < 5, "no NOTIFY after the commit"
    finally:
        listener.close()


def test_no_trigger_notifies_from_inside_the_writing_transaction(clean_outbox: Engine) -> None:
    # A NOTIFY inside a transaction takes a cluster-wide lock until its commit is flushed.
    with clean_outbox.connect() as connection:
        triggers = connection.exec_driver_sql(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'outbox'::regclass AND NOT tgisinternal"
        ).all()
    assert triggers == []


def test_publish_span_continues_the_producer_trace(
    tmp_path: Path,
    clean_outbox: Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
    telemetry: Telemetry,
) -> None:
    relay = _relay(clean_outbox, aws_settings, provisioned, telemetry)
    with (
        request_context("req-outbox"),
        telemetry.tracer.start_as_current_span("CreateOrder") as producer,
    ):
        _place(clean_outbox, "traced")
    assert relay.publish_batch() == 1
    telemetry.force_flush()
    messages = _drain(aws_settings, provisioned.queues["orders-orders"].url, expect=1)
    records = read_span_file(tmp_path / "spans.jsonl")
    publish = next(r for r in records if r["kind"] == "PRODUCER")
    context = producer.get_span_context()
    assert publish["trace_id"] == trace.format_trace_id(context.trace_id)
    assert publish["parent_span_id"] == trace.format_span_id(context.span_id)
    assert publish["request_id"] == "req-outbox"
    traceparent = messages[0]["MessageAttributes"]["traceparent"]["StringValue"]
    assert traceparent.split("-")[1:3] == [publish["trace_id"], publish["span_id"]]
    assert decode(messages[0]["Body"]).request_id == "req-outbox"


def test_published_rows_are_purged_after_retention(
    clean_outbox: Engine,
    aws_settings: Settings,
    provisioned: ProvisionedTopology,
    telemetry: Telemetry,
) -> None:
    relay = _relay(clean_outbox, aws_settings, provisioned, telemetry)
    _place(clean_outbox, "old")
    relay.publish_batch()
    _place(clean_outbox, "pending")
    time.sleep(0.2)
    assert purge_published(clean_outbox, timedelta(seconds=0.1)) == 1
    assert relay.backlog().size == 1
    _drain(aws_settings, provisioned.queues["orders-orders"].url, expect=1, timeout=3)
