"""Ingest over real parts: uvicorn on loopback, httpx, PostgreSQL, the relay and the emulator."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from eventforge.events.v1.events_pb2 import Envelope
from eventforge.ingest.bootstrap import bootstrap, inbound
from eventforge.ingest.entrypoints.app import create_app
from eventforge.runtime import aws
from eventforge.runtime.asgi import serve_asgi
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.emulator import free_port
from eventforge.runtime.messaging import relay_process
from eventforge.runtime.messaging.envelope import decode
from eventforge.runtime.messaging.schema import outbox_table
from eventforge.runtime.migrations import migrate
from eventforge.runtime.provision import provision
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.fixtures.ingest import JSON_HEADERS, acquirer_delivery, payments_body, payments_headers
from tests.fixtures.network import TcpProxy

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.integration

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "request_id"}


@dataclass
class Served:
    url: str
    spans: InMemorySpanExporter

    def server_span(self, request_id: str) -> ReadableSpan:
        found = [
            span
            for span in self.spans.get_finished_spans()
            if (span.attributes or {}).get("request_id") == request_id
        ]
        assert len(found) == 1, found
        return found[0]


@contextmanager
def serving(settings: Settings) -> Iterator[Served]:
    """The ingest API of `settings` on a free loopback port, in this process."""
    settings = settings.model_copy(update={"ingest_addr": f"127.0.0.1:{free_port()}"})
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(bootstrap(settings), inbound(settings), tracer_provider=provider)
    stop = threading.Event()
    server = threading.Thread(
        target=serve_asgi, args=(app, settings.ingest_addr, stop), kwargs={"grace": 1}
    )
    server.start()
    url = f"http://{settings.ingest_addr}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "ingest did not start"
                time.sleep(0.05)
        yield Served(url, spans)
    finally:
        stop.set()
        server.join(10)


@dataclass
class Stack:
    settings: Settings
    served: Served
    sqs: SQSClient
    queue_url: str

    def post(self, source: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(f"{self.served.url}/webhooks/{source}", headers=headers, content=body)

    def published(self, expected: int, timeout: float = 30.0) -> list[tuple[Envelope, Any]]:
        """Receive (and delete) `expected` messages from orders-inbound, then make sure no more
        come within a second; each as its envelope and message attributes."""
        received: list[tuple[Envelope, Any]] = []
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while True:
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            for message in reply.get("Messages", []):
                received.append((decode(message["Body"]), message.get("MessageAttributes", {})))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            now = time.monotonic()
            if len(received) >= expected:
                quiet_until = quiet_until or now + 1.0
                if now >= quiet_until:
                    return received
            assert now < deadline, f"{len(received)} of {expected} messages published"

    def outbox_size(self) -> int:
        engine = create_service_engine(self.settings, "ingest", pool_size=1)
        try:
            with engine.connect() as connection:
                return int(
                    connection.execute(select(func.count()).select_from(outbox_table)).one()[0]
                )
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def stack(stack_settings: Settings) -> Iterator[Stack]:
    """The ingest API and relay on the test database and a freshly provisioned emulator."""
    settings = stack_settings
    migrate(settings, "ingest")
    provision(settings, TOPOLOGY)
    sqs = aws.sqs(settings)
    name = TOPOLOGY.resolve(settings.name_prefix).queues["orders-inbound"].name
    queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.purge_queue(QueueUrl=queue_url)
    stop = threading.Event()
    relay = threading.Thread(target=relay_process.main, args=(settings, "ingest", stop))
    relay.start()
    try:
        with serving(settings) as served:
            yield Stack(settings, served, sqs, queue_url)
    finally:
        stop.set()
        relay.join(15)


def test_a_signed_delivery_is_published_once_for_orders_in_the_trace_it_began(
    stack: Stack,
) -> None:
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    body = payments_body(payment_id=payment_id, amount_minor=2500, currency="EUR")
    sender_trace = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    headers = {**payments_headers(body), "x-request-id": "req-1", "traceparent": sender_trace}
    answer = stack.post("payments", headers, body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "recorded"
    assert answer.headers["x-request-id"] == answer.json()["request_id"] == "req-1"

    [(envelope, message_attributes)] = stack.published(1)
    assert (envelope.event_type, envelope.source, envelope.subject) == (
        "payment.succeeded",
        "ingest",
        payment_id,
    )
    payment = envelope.payment_succeeded
    assert (payment.payment_id, payment.provider) == (payment_id, "payments")
    assert (payment.amount.amount_minor, payment.amount.currency) == (2500, "EUR")
    assert envelope.request_id == "req-1"
    # The trace begins at the HTTP span (the sender's trace is only linked) and goes on.
    span = stack.served.server_span("req-1")
    assert span.name == "POST /webhooks/{source}"
    assert span.parent is None
    assert [link.context.trace_id for link in span.links] == [int("ab" * 16, 16)]
    span_attributes = span.attributes or {}
    assert span_attributes["http.response.status_code"] == 202
    assert span_attributes["eventforge.webhook.outcome"] == "recorded"
    traceparent = message_attributes["traceparent"]["StringValue"]
    assert traceparent.split("-")[1] == f"{span.context.trace_id:032x}"
    assert message_attributes["event_type"]["StringValue"] == "payment.succeeded"


def test_the_acquirers_deliveries_are_published_as_payment_events(stack: Stack) -> None:
    headers, body = acquirer_delivery("capture-x1", "capture.declined", payment_reference="pay_a")
    answer = stack.post("acquirer", headers, body)
    assert answer.status_code == 202, answer.text
    [(envelope, _)] = stack.published(1)
    assert envelope.event_type == "payment.failed"
    failed = envelope.payment_failed
    assert (failed.payment_id, failed.provider, failed.provider_event_id, failed.reason) == (
        "pay_a",
        "acquirer",
        "capture-x1",
        "insufficient funds",
    )


def _refusals(stack: Stack) -> dict[str, httpx.Response]:
    body = payments_body()
    limit = stack.settings.ingest_max_body_bytes
    big = b"{" + b" " * limit + b"}"
    stale = payments_headers(body, timestamp=int(time.time()) - 3600)
    url = stack.served.url

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    return {
        "unknown-source": stack.post("billing", payments_headers(body), body),
        "not-found": httpx.post(f"{url}/hooks/payments", headers=JSON_HEADERS, content=body),
        "method-not-allowed": httpx.get(f"{url}/webhooks/payments"),
        "unsupported-media-type": stack.post(
            "payments", {**payments_headers(body), "content-type": "text/plain"}, body
        ),
        "body-too-large": stack.post("payments", payments_headers(big), big),
        "body-too-large-streamed": httpx.post(
            f"{url}/webhooks/payments", headers=payments_headers(b"{}"), content=chunks()
        ),
        "bad-signature": stack.post("payments", payments_headers(body, secret="guess"), body),
        "missing-signature": stack.post("payments", JSON_HEADERS, body),
        "stale-signature": stack.post("payments", stale, body),
        "stale-event": stack.post(
            "payments",
            payments_headers(old := payments_body(created=int(time.time()) - 40 * 86400)),
            old,
        ),
        "malformed-payload": stack.post("payments", payments_headers(b"{oops"), b"{oops"),
        "invalid-payload": stack.post(
            "payments",
            payments_headers(bad := payments_body(amount_minor=-5, currency="EUR")),
            bad,
        ),
    }


def test_each_refusal_is_its_own_4xx_problem_and_records_nothing(stack: Stack) -> None:
    before = stack.outbox_size()
    answers = _refusals(stack)
    expected = {
        "unknown-source": (404, "unknown-source"),
        "not-found": (404, "not-found"),
        "method-not-allowed": (405, "method-not-allowed"),
        "unsupported-media-type": (415, "unsupported-media-type"),
        "body-too-large": (413, "body-too-large"),
        "body-too-large-streamed": (413, "body-too-large"),
        "bad-signature": (401, "bad-signature"),
        "missing-signature": (401, "bad-signature"),
        "stale-signature": (401, "stale-signature"),
        "stale-event": (401, "stale-event"),
        "malformed-payload": (400, "malformed-payload"),
        "invalid-payload": (422, "invalid-payload"),
    }
    for case, (status, slug) in expected.items():
        answer = answers[case]
        assert answer.status_code == status, (case, answer.text)
        assert answer.headers["content-type"] == "application/problem+json", case
        problem = answer.json()
        assert set(problem) == PROBLEM_MEMBERS, case
        assert problem["type"] == f"tag:eventforge,2026:problems/{slug}", case
        assert problem["status"] == status, case
        assert problem["request_id"] == answer.headers["x-request-id"], case
    assert answers["method-not-allowed"].headers["allow"] == "POST"
    assert stack.outbox_size() == before


def test_duplicates_sequential_and_concurrent_are_recorded_and_published_once(
    stack: Stack,
) -> None:
    body = payments_body(f"evt_{uuid.uuid4().hex}", "payment.failed", payment_id="pay_d")

    async def deliver_concurrently(times: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.served.url) as client:
            return await asyncio.gather(
                *(
                    client.post("/webhooks/payments", headers=payments_headers(body), content=body)
                    for _ in range(times)
                )
            )

    answers = asyncio.run(deliver_concurrently(8))
    answers.append(stack.post("payments", payments_headers(body), body))
    outcomes = sorted((a.status_code, a.json()["outcome"]) for a in answers)
    assert outcomes == [(200, "duplicate")] * 8 + [(202, "recorded")]
    [(envelope, _)] = stack.published(1)
    assert envelope.payment_failed.reason == "card declined"


def test_a_burst_of_200_deliveries_each_sent_twice_publishes_200_events(stack: Stack) -> None:
    bodies = [payments_body(payment_id=f"pay_{n}") for n in range(200)]

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=stack.served.url, limits=limits, timeout=60) as c:
            return await asyncio.gather(
                *(
                    c.post("/webhooks/payments", headers=payments_headers(body), content=body)
                    for body in bodies * 2
                )
            )

    started = time.monotonic()
    answers = asyncio.run(burst())
    took = time.monotonic() - started
    outcomes = [a.json()["outcome"] for a in answers]
    assert sorted(set(outcomes)) == ["duplicate", "recorded"], {a.status_code for a in answers}
    assert outcomes.count("recorded") == 200
    assert took < 60, f"400 deliveries took {took:.1f} s"
    published = stack.published(200, timeout=60)
    ids = [envelope.payment_succeeded.provider_event_id for envelope, _ in published]
    assert len(ids) == len(set(ids)) == 200


def test_a_database_outage_answers_503_with_retry_after(
    stack: Stack, tcp_proxy: type[TcpProxy]
) -> None:
    url = make_url(str(stack.settings.database_url))
    proxy = tcp_proxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = stack.settings.model_copy(update={"database_url": proxied})
    with serving(settings) as served:
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        proxy.cut()
        body = payments_body()
        answer = httpx.post(
            f"{served.url}/webhooks/payments", headers=payments_headers(body), content=body
        )
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["type"].endswith("/database-unavailable")
        health = httpx.get(f"{served.url}/healthz", timeout=10)
        assert (health.status_code, health.json()) == (503, {"status": "NOT_SERVING"})
