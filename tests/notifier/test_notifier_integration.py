"""Notifier end to end: real orders events, SNS→SQS, the worker, signed webhooks, SES emails.

Processes: orders and files (api, worker, relay) produce real order and receipt events; the
notifier (api, worker,
relay) runs with 127.0.0.1 on the webhook allow-list and small backoffs; a second NotifierService
without the allow-list, served in the test process, shows what production refuses. Receivers
are http.server threads.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from eventforge.events.v1 import events_pb2
from eventforge.notifier.bootstrap import bootstrap
from eventforge.notifier.entrypoints.api import SERVICE_NAME, NotifierServicer
from eventforge.notifier.signing import verify
from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.emulator import Emulator, SentEmail
from eventforge.runtime.messaging.envelope import decode, encode, new_envelope
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.fixtures.emulator import ses_messages_to
from tests.fixtures.orders import order_request
from tests.fixtures.polling import eventually
from tests.fixtures.services import ProcessGroup, served_in_process

pytestmark = pytest.mark.integration

Delivery = notifier_pb2.DeliveryStatus
MAX_ATTEMPTS, FAILING_AFTER, BACKOFF = 4, 3, 0.6


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified: bool

    @property
    def event_id(self) -> str:
        return self.headers["EventForge-Event-Id"]


@dataclass
class Receivers:
    """One loopback HTTP server: `/ok/...` answers 204 after checking the signature, `/fail/...`
    answers 500."""

    port: int
    secrets: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str, event_id: str | None = None) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.received
                if r.path == path and (event_id is None or r.event_id == event_id)
            ]


@pytest.fixture(scope="module")
def receivers() -> Iterator[Receivers]:
    state = Receivers(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            verified = verify(
                state.secrets.get(self.path, ""),
                headers.get("EventForge-Timestamp", ""),
                body,
                headers.get("EventForge-Signature", ""),
            )
            with state.lock:
                state.received.append(
                    Received(self.path, headers, body, time.monotonic(), verified)
                )
            self.send_response(204 if self.path.startswith("/ok") and verified else 500)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def notifier_settings(stack_settings: Settings) -> Settings:
    return Settings(
        **{
            **stack_settings.model_dump(),
            "notifier_webhook_allowed_hosts": "127.0.0.1",
            "notifier_webhook_timeout_seconds": 2.0,
            "notifier_webhook_max_attempts": MAX_ATTEMPTS,
            "notifier_webhook_failing_after": FAILING_AFTER,
            "notifier_webhook_backoff_seconds": BACKOFF,
            "notifier_webhook_backoff_max_seconds": 4.0,
        }
    )


@dataclass
class Stack:
    notifier: notifier_pb2_grpc.NotifierServiceStub
    strict: notifier_pb2_grpc.NotifierServiceStub
    orders: orders_pb2_grpc.OrdersServiceStub


@pytest.fixture(scope="module")
def strict_notifier(stack_settings: Settings) -> Iterator[str]:
    """A NotifierService without the allow-list (as in production), served in this process."""
    app = bootstrap(stack_settings)
    servicer = NotifierServicer(app)
    with served_in_process(
        stack_settings,
        lambda server: notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server),
        SERVICE_NAME,
        app.engine,
    ) as address:
        yield address


@pytest.fixture(scope="module")
def stack(
    module_processes: ProcessGroup,
    stack_settings: Settings,
    notifier_settings: Settings,
    strict_notifier: str,
) -> Iterator[Stack]:
    sqs = aws.sqs(stack_settings)
    names = TOPOLOGY.resolve(stack_settings.name_prefix)
    for logical in ("notifier-orders", "notifier-files", "files-orders"):
        # Earlier modules left events here that no notifier consumed; they are not ours.
        url = sqs.get_queue_url(QueueName=names.queues[logical].name)["QueueUrl"]
        sqs.purge_queue(QueueUrl=url)
    apis = [
        module_processes.start("orders", "api"),
        module_processes.start("files", "api"),
        module_processes.start("notifier", "api", settings=notifier_settings),
    ]
    for service in ("orders", "files"):
        module_processes.start(service, "worker")
        module_processes.start(service, "relay")
    module_processes.start("notifier", "worker", settings=notifier_settings)
    module_processes.start("notifier", "relay", settings=notifier_settings)
    for api in apis:
        api.wait_serving(timeout=120)  # generous: shared CI machines start Python slowly
    with (
        grpc.insecure_channel(apis[0].address) as orders,
        grpc.insecure_channel(apis[2].address) as notifier,
        grpc.insecure_channel(strict_notifier) as strict,
    ):
        yield Stack(
            notifier=notifier_pb2_grpc.NotifierServiceStub(notifier),
            strict=notifier_pb2_grpc.NotifierServiceStub(strict),
            orders=orders_pb2_grpc.OrdersServiceStub(orders),
        )


def register(
    stack: Stack, receivers: Receivers, path: str, event_types: list[str]
) -> notifier_pb2.RegisterWebhookResponse:
    reply = stack.notifier.RegisterWebhook(
        notifier_pb2.RegisterWebhookRequest(
            url=receivers.url(path), event_types=event_types, description=path
        ),
        timeout=5,
    )
    receivers.secrets[path] = reply.signing_secret
    return reply


def deliveries_of(stack: Stack, **filters: str) -> list[notifier_pb2.Delivery]:
    request = notifier_pb2.ListDeliveriesRequest(page_size=100, **filters)
    return list(stack.notifier.ListDeliveries(request, timeout=5).deliveries)


def emails_to(stack: Stack, recipient: str) -> list[notifier_pb2.Notification]:
    request = notifier_pb2.ListNotificationsRequest(recipient=recipient, page_size=100)
    return list(stack.notifier.ListNotifications(request, timeout=5).notifications)


def place_order(stack: Stack, customer: str) -> orders_pb2.Order:
    """A real order that the saga confirms (tok_success)."""
    return stack.orders.CreateOrder(
        order_request(uuid.uuid4().hex, customer_id="cust-notifier", customer_email=customer),
        timeout=5,
    ).order


def sent_email(
    stack: Stack, recipient: str, event_type: str, timeout: float = 20.0
) -> notifier_pb2.Notification:
    """The one email of `event_type` sent to `recipient`, once it is SENT."""
    [email] = eventually(
        lambda: [
            n
            for n in emails_to(stack, recipient)
            if n.event_type == event_type and n.status == notifier_pb2.NOTIFICATION_STATUS_SENT
        ],
        timeout=timeout,
        what=f"the {event_type} email to {recipient}",
    )
    return email


def ses_message(emulator: Emulator, recipient: str, message_id: str) -> SentEmail:
    """The email SES accepted with the provider id the notifier recorded."""
    [message] = [m for m in ses_messages_to(emulator, recipient) if m.id == message_id]
    return message


def violation_on_url(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    assert status is not None
    details = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(details)
    [violation] = [v for v in details.field_violations if v.field == "url"]
    return str(violation.description)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("https://127.0.0.1/hook", "loopback"),
        ("http://127.0.0.1:8080/hook", "https"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:10.0.0.1]/hook", "private"),
        ("https://100.64.0.7/hook", "carrier-grade NAT"),
        ("https://localhost/hook", "host localhost resolves to"),
    ],
)
@pytest.mark.security
def test_ssrf_targets_are_refused_at_registration(stack: Stack, url: str, reason: str) -> None:
    request = notifier_pb2.RegisterWebhookRequest(url=url, event_types=["order.confirmed"])
    assert reason in violation_on_url(lambda: stack.strict.RegisterWebhook(request, timeout=5))


def test_the_allow_list_admits_only_its_hosts(stack: Stack) -> None:
    for url, reason in (("http://10.0.0.1/hook", "allow-list"), ("https://[::1]/", "loopback")):
        request = notifier_pb2.RegisterWebhookRequest(url=url, event_types=["order.failed"])
        assert reason in violation_on_url(lambda r=request: stack.notifier.RegisterWebhook(r))  # type: ignore[misc]


def test_a_confirmed_order_emails_the_customer_and_delivers_signed_webhooks(
    stack: Stack, receivers: Receivers, emulator: Emulator, stack_settings: Settings
) -> None:
    healthy = register(stack, receivers, "/ok/orders", ["order.confirmed", "order.failed"])
    failing = register(stack, receivers, "/fail/orders", ["order.confirmed"])
    customer = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    order = place_order(stack, customer)

    def ours(path: str) -> list[Received]:
        return [r for r in receivers.at(path) if order.order_id.encode() in r.body]

    [delivered] = eventually(lambda: ours("/ok/orders"), what="the healthy delivery")
    assert delivered.verified
    assert delivered.headers["EventForge-Event-Type"] == "order.confirmed"
    envelope = decode(delivered.body)
    assert envelope.order_confirmed.order_id == order.order_id

    email = sent_email(stack, customer, "order.confirmed")
    assert (email.event_id, email.event_type, email.channel) == (
        envelope.event_id,
        "order.confirmed",
        "email",
    )
    message = ses_message(emulator, customer, email.provider_message_id)
    assert order.order_id in message.subject
    assert "12.99 USD" in message.body

    # The failing endpoint: attempts with growing waits, FAILING after 3, FAILED after 4.
    failed = eventually(
        lambda: [
            d
            for d in deliveries_of(
                stack, webhook_id=failing.webhook.webhook_id, event_id=envelope.event_id
            )
            if d.status == Delivery.DELIVERY_STATUS_FAILED
        ],
        what="the failing delivery to give up",
    )[0]
    assert [a.http_status for a in failed.attempts] == [500] * MAX_ATTEMPTS
    assert all(a.error == "HTTP 500" for a in failed.attempts)
    times = [r.at for r in ours("/fail/orders")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == MAX_ATTEMPTS - 1
    for n, gap in enumerate(gaps, start=1):
        assert gap >= BACKOFF * 2 ** (n - 1) / 2 - 0.05, gaps  # at least half of its ceiling
    assert gaps[-1] > gaps[0], gaps

    [listed] = [
        w
        for w in stack.notifier.ListWebhooks(
            notifier_pb2.ListWebhooksRequest(page_size=100)
        ).webhooks
        if w.webhook_id == failing.webhook.webhook_id
    ]
    assert listed.status == notifier_pb2.WEBHOOK_STATUS_FAILING
    assert listed.consecutive_failures >= MAX_ATTEMPTS
    engine = create_service_engine(stack_settings, "notifier")
    try:
        with engine.connect() as connection:
            announced = connection.execute(
                sa.text(
                    "SELECT count(*) FROM outbox WHERE event_type = 'notification.failed' "
                    "AND subject = :w"
                ),
                {"w": failing.webhook.webhook_id},
            ).scalar_one()
    finally:
        engine.dispose()
    assert announced == 1

    # The healthy endpoint got exactly one delivery of the event, with one attempt.
    by_endpoint = {d.webhook_id: d for d in deliveries_of(stack, event_id=envelope.event_id)}
    ok = by_endpoint[healthy.webhook.webhook_id]
    assert ok.status == Delivery.DELIVERY_STATUS_SUCCEEDED
    assert len(ok.attempts) == 1
    assert ok.attempts[0].http_status == 204
    assert ok.attempts[0].latency_ms >= 0
    assert len(ours("/ok/orders")) == 1


def test_a_receipt_email_links_the_pdf_files_stored(
    stack: Stack, emulator: Emulator, stack_settings: Settings
) -> None:
    customer = f"eve-{uuid.uuid4().hex[:8]}@example.com"
    order = place_order(stack, customer)
    # orders → files renders the PDF → receipt.ready → the notifier asks files for a link.
    email = sent_email(stack, customer, "receipt.ready", timeout=60)
    assert order.order_id in email.subject
    message = ses_message(emulator, customer, email.provider_message_id)
    receipts = TOPOLOGY.resolve(stack_settings.name_prefix).buckets["receipts"]
    assert f"/{receipts}/" in message.body
    assert "Download your receipt" in message.body


def test_a_duplicated_event_makes_one_email_and_one_delivery_per_endpoint(
    stack: Stack, receivers: Receivers, emulator: Emulator, stack_settings: Settings
) -> None:
    webhook = register(stack, receivers, "/ok/duplicates", ["order.failed"])
    customer = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    envelope = new_envelope(
        events_pb2.OrderFailed(
            order_id=str(uuid.uuid4()), customer_email=customer, reason="card declined"
        ),
        source="orders",
        subject="duplicate-test",
    )
    sqs = aws.sqs(stack_settings)
    queue = TOPOLOGY.resolve(stack_settings.name_prefix).queues["notifier-orders"].name
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    for _ in range(2):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=encode(envelope),
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": envelope.event_type}
            },
        )
    eventually(
        lambda: [
            n
            for n in emails_to(stack, customer)
            if n.status == notifier_pb2.NOTIFICATION_STATUS_SENT
        ],
        what="the email",
    )
    eventually(lambda: receivers.at("/ok/duplicates", envelope.event_id), what="the delivery")
    time.sleep(2.5)  # time for a duplicate to show up, if there were one
    [email] = emails_to(stack, customer)
    assert "card declined" not in email.subject
    assert email.event_id == envelope.event_id
    assert len(ses_messages_to(emulator, customer)) == 1
    deliveries = deliveries_of(stack, event_id=envelope.event_id)
    assert len(deliveries) == len({d.webhook_id for d in deliveries})
    assert webhook.webhook.webhook_id in {d.webhook_id for d in deliveries}
    [received] = receivers.at("/ok/duplicates", envelope.event_id)
    assert received.verified


def test_webhooks_page_and_delete_idempotently(stack: Stack, receivers: Receivers) -> None:
    made = [register(stack, receivers, f"/ok/page-{n}", ["file.rejected"]) for n in range(3)]
    ids = {m.webhook.webhook_id for m in made}
    listed: list[str] = []
    token = ""
    while True:
        page = stack.notifier.ListWebhooks(
            notifier_pb2.ListWebhooksRequest(page_size=2, page_token=token), timeout=5
        )
        listed += [w.webhook_id for w in page.webhooks]
        if not (token := page.next_page_token):
            break
    assert ids <= set(listed)
    target = made[0].webhook.webhook_id
    for _ in range(2):
        stack.notifier.DeleteWebhook(
            notifier_pb2.DeleteWebhookRequest(webhook_id=target), timeout=5
        )
    remaining = stack.notifier.ListWebhooks(
        notifier_pb2.ListWebhooksRequest(page_size=100)
    ).webhooks
    assert target not in {w.webhook_id for w in remaining}
    with pytest.raises(grpc.RpcError) as raised:
        stack.notifier.DeleteWebhook(
            notifier_pb2.DeleteWebhookRequest(webhook_id=str(uuid.uuid4())), timeout=5
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
