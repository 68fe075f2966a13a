"""A payment confirmed out of band, end to end from the inbound topic: PostgreSQL, the AWS
emulator, the orders API, relay and a real orders worker consuming `orders-inbound`.

The provider's webhook reaches the topic through ingest; here the test publishes the envelope
ingest would, after settling the charge in the local provider's books as the provider would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.protobuf.message import Message

from eventforge.common.v1.money_pb2 import Money
from eventforge.events.v1 import events_pb2
from eventforge.events.v1.events_pb2 import Envelope
from eventforge.orders.adapters.payments import LocalPaymentGateway
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.outbox import message_attributes
from eventforge.runtime.scheduler import TickSender
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.fixtures.ingest import payments_body, payments_headers
from tests.fixtures.polling import eventually
from tests.fixtures.services import ProcessGroup
from tests.orders.test_orders_integration import charges, request, settle

pytestmark = pytest.mark.integration

Status = orders_pb2.OrderStatus
TINY_TIMEOUT = 2.0
"""Seconds a pending payment waits in the tests of the deadline."""
StartWorker = Callable[[float], None]


def recover_after_the_deadline(settings: Settings) -> None:
    """Let the pending payment's deadline pass, then send an `order-recovery` tick, as the
    scheduler does every minute."""
    time.sleep(TINY_TIMEOUT + 0.5)
    TickSender(aws.sqs(settings), settings).send(TOPOLOGY.job("order-recovery"), datetime.now(UTC))


@pytest.fixture(scope="module")
def orders(module_processes: ProcessGroup) -> Iterator[orders_pb2_grpc.OrdersServiceStub]:
    api = module_processes.start("orders", "api")
    module_processes.start("orders", "relay")
    api.wait_serving()
    with grpc.insecure_channel(api.address) as channel:
        yield orders_pb2_grpc.OrdersServiceStub(channel)


@pytest.fixture
def worker(module_processes: ProcessGroup) -> Iterator[StartWorker]:
    """Start this test's orders worker with a payment timeout (seconds); stopped after it."""
    started = []

    def start(timeout_seconds: float) -> None:
        env = {"EVENTFORGE_PAYMENT_PENDING_TIMEOUT_SECONDS": str(timeout_seconds)}
        started.append(module_processes.start("orders", "worker", env=env))

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def db(stack_settings: Settings) -> Iterator[sa.Engine]:
    engine = create_service_engine(stack_settings, "orders")
    yield engine
    engine.dispose()


def pending_order(stub: orders_pb2_grpc.OrdersServiceStub, db: sa.Engine) -> tuple[str, str]:
    """A new tok_pending order once it waits on its payment: (order id, payment id)."""
    order_id = stub.CreateOrder(request("tok_pending"), timeout=5).order.order_id

    def waiting() -> bool:
        order = stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5).order
        return order.status == Status.ORDER_STATUS_PAYMENT_PENDING

    eventually(waiting, timeout=30, what="the order to wait on its payment")
    order = stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5).order
    # GetOrder names the charge the provider's webhooks will name.
    assert order.payment_id.startswith("pay_")
    assert order.payment_id == scalar(
        db, "SELECT payment_id FROM orders WHERE order_id = :o", o=order_id
    )
    return order_id, order.payment_id


def scalar(db: sa.Engine, sql: str, **params: object) -> str:
    with db.connect() as connection:
        return str(connection.execute(sa.text(sql), params).scalar_one())


def book_stock(db: sa.Engine) -> int:
    return int(scalar(db, "SELECT stock FROM products WHERE sku = 'SKU-BOOK-001'"))


def publish_inbound(settings: Settings, payload: Message) -> Envelope:
    """Publish an event on the inbound topic as ingest does; returns its envelope."""
    envelope = new_envelope(payload, source="ingest", subject=getattr(payload, "payment_id", ""))
    publish_envelope(settings, envelope)
    return envelope


def publish_envelope(settings: Settings, envelope: Envelope) -> None:
    topic = TOPOLOGY.resolve_for(settings).topics["inbound"]
    aws.sns(settings).publish(
        TopicArn=aws.topic_arn(settings, topic),
        Message=encode(envelope),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value}
            for name, value in message_attributes(envelope).items()
        },
    )


def succeeded(payment_id: str) -> events_pb2.PaymentSucceeded:
    return events_pb2.PaymentSucceeded(
        payment_id=payment_id,
        provider="payments",
        provider_event_id=f"evt_{uuid.uuid4().hex}",
        amount=Money(amount_minor=5000, currency="USD"),
    )


def handled(db: sa.Engine, envelope: Envelope) -> bool:
    """Whether the orders worker consumed (and acknowledged) the event."""
    found = scalar(db, "SELECT count(*) FROM inbox WHERE event_id = :e", e=envelope.event_id)
    return int(found) > 0


def published(db: sa.Engine, order_id: str, event_type: str) -> int:
    sql = "SELECT count(*) FROM outbox WHERE subject = :o AND event_type = :t"
    return int(scalar(db, sql, o=order_id, t=event_type))


def test_payment_succeeded_confirms_the_waiting_order_once(
    orders: orders_pb2_grpc.OrdersServiceStub,
    db: sa.Engine,
    worker: StartWorker,
    stack_settings: Settings,
) -> None:
    worker(900)
    order_id, payment_id = pending_order(orders, db)
    LocalPaymentGateway(db).settle(payment_id)
    first = publish_inbound(stack_settings, succeeded(payment_id))
    publish_envelope(stack_settings, first)  # the same event delivered twice
    second = publish_inbound(stack_settings, succeeded(payment_id))  # the provider's retry
    order = settle(orders, order_id)
    assert order.status == Status.ORDER_STATUS_CONFIRMED
    eventually(lambda: handled(db, first) and handled(db, second), what="both events handled")
    assert charges(db, order_id) == (1, 0)
    assert published(db, order_id, "order.confirmed") == 1


def test_payment_failed_releases_and_fails_with_the_providers_reason(
    orders: orders_pb2_grpc.OrdersServiceStub,
    db: sa.Engine,
    worker: StartWorker,
    stack_settings: Settings,
) -> None:
    worker(900)
    stock = book_stock(db)
    order_id, payment_id = pending_order(orders, db)
    assert book_stock(db) == stock - 2
    LocalPaymentGateway(db).settle(payment_id, succeeded=False, reason="insufficient funds")
    publish_inbound(
        stack_settings,
        events_pb2.PaymentFailed(
            payment_id=payment_id,
            provider="payments",
            provider_event_id=f"evt_{uuid.uuid4().hex}",
            reason="insufficient funds",
        ),
    )
    order = settle(orders, order_id)
    assert order.status == Status.ORDER_STATUS_FAILED
    assert order.failure_reason == "payment failed: insufficient funds"
    assert book_stock(db) == stock
    assert charges(db, order_id) == (1, 0)  # refused: nothing to refund
    assert published(db, order_id, "order.failed") == 1


def test_an_overdue_payment_times_out_voids_the_charge_and_releases_the_stock(
    orders: orders_pb2_grpc.OrdersServiceStub,
    db: sa.Engine,
    worker: StartWorker,
    stack_settings: Settings,
) -> None:
    worker(TINY_TIMEOUT)
    stock = book_stock(db)
    order_id, payment_id = pending_order(orders, db)
    recover_after_the_deadline(stack_settings)
    order = settle(orders, order_id, timeout=TINY_TIMEOUT + 20)
    assert order.status == Status.ORDER_STATUS_FAILED
    assert order.failure_reason == "payment confirmation timed out"
    assert book_stock(db) == stock
    assert charges(db, order_id) == (1, 1)
    status = "SELECT status FROM payment_charges WHERE payment_id = :p"
    assert scalar(db, status, p=payment_id) == "voided"
    with pytest.raises(LookupError):
        LocalPaymentGateway(db).settle(payment_id)  # a voided charge never settles


def test_a_charge_settled_without_its_webhook_is_confirmed_at_the_deadline(
    orders: orders_pb2_grpc.OrdersServiceStub,
    db: sa.Engine,
    worker: StartWorker,
    stack_settings: Settings,
) -> None:
    worker(TINY_TIMEOUT)
    order_id, payment_id = pending_order(orders, db)
    # The provider settled the charge, but its webhook is lost until after the deadline: at the
    # deadline the saga asks the provider, and confirms.
    LocalPaymentGateway(db).settle(payment_id)
    recover_after_the_deadline(stack_settings)
    assert settle(orders, order_id, timeout=20).status == Status.ORDER_STATUS_CONFIRMED
    late = publish_inbound(stack_settings, succeeded(payment_id))
    eventually(lambda: handled(db, late), what="the late payment.succeeded handled")
    order = orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5).order
    assert order.status == Status.ORDER_STATUS_CONFIRMED
    assert charges(db, order_id) == (1, 0)
    assert published(db, order_id, "order.confirmed") == 1


def test_an_event_for_an_unknown_payment_is_acknowledged(
    db: sa.Engine, worker: StartWorker, stack_settings: Settings
) -> None:
    worker(900)
    unknown = publish_inbound(stack_settings, succeeded(f"pay_{uuid.uuid4().hex}"))
    eventually(lambda: handled(db, unknown), what="the unknown payment's event handled")


def test_a_signed_webhook_through_ingest_confirms_the_waiting_order(
    orders: orders_pb2_grpc.OrdersServiceStub,
    module_processes: ProcessGroup,
    db: sa.Engine,
    worker: StartWorker,
) -> None:
    """The whole out-of-band path: the provider's signed webhook → ingest (HTTP, its outbox and
    relay) → the inbound topic → orders-inbound → the saga."""
    worker(900)
    ingest = module_processes.start("ingest", "api")
    module_processes.start("ingest", "relay")
    order_id, payment_id = pending_order(orders, db)
    LocalPaymentGateway(db).settle(payment_id)
    total = orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5).order.total
    body = payments_body(
        payment_id=payment_id, amount_minor=total.amount_minor, currency=total.currency
    )
    url = f"http://{ingest.address}/webhooks/payments"

    def delivered() -> bool:
        try:
            answer = httpx.post(url, headers=payments_headers(body), content=body, timeout=5)
        except httpx.TransportError:
            return False  # ingest still starting
        assert answer.status_code in (200, 202), answer.text
        return True

    eventually(delivered, timeout=30, what="ingest to accept the signed webhook")
    order = settle(orders, order_id)
    assert order.status == Status.ORDER_STATUS_CONFIRMED
    assert charges(db, order_id) == (1, 0)
    assert published(db, order_id, "order.confirmed") == 1
