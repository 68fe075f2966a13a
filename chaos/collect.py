"""Read what the run left behind: the database, the notifier's API, the emulator, the DLQs.

Reads only. The database is read over a direct connection (the stack's goes through the
outage proxy); the notifier's emails and deliveries come from its gRPC API; the emails the
emulator's SES accepted from moto's model dump; dead letters with `ReceiveMessage`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import psycopg

from chaos.check import (
    Charge,
    DeadLetter,
    Email,
    Event,
    Observations,
    Refund,
    WebhookDelivery,
)
from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.runtime import aws
from eventforge.runtime.emulator import Emulator, EmulatorError
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

OUTBOXES = ("orders", "files", "notifier")
PAGE = 100
MAX_PAGES = 1000


def _rows(
    connection: psycopg.Connection[tuple[Any, ...]], sql: str, params: Iterable[Any] = ()
) -> list[tuple[Any, ...]]:
    return connection.execute(sql, tuple(params)).fetchall()


def _table_exists(connection: psycopg.Connection[tuple[Any, ...]], qualified: str) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
    return bool(row and row[0])


def unpublished(connection: psycopg.Connection[tuple[Any, ...]]) -> dict[str, int]:
    """Unpublished outbox rows per service."""
    found = {}
    for schema in OUTBOXES:
        if _table_exists(connection, f"{schema}.outbox"):
            sql = f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"  # noqa: S608
            found[schema] = int(_rows(connection, sql)[0][0])
    return found


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class Queues:
    """The run's source queues and DLQs, by logical name."""

    def __init__(self, settings: Settings) -> None:
        self.sqs: SQSClient = aws.sqs(settings)
        resolved = TOPOLOGY.resolve_for(settings)
        self.source = {
            name: self.sqs.get_queue_url(QueueName=q.name)["QueueUrl"]
            for name, q in resolved.queues.items()
        }
        self.dlq = {
            name: self.sqs.get_queue_url(QueueName=q.dlq_name)["QueueUrl"]
            for name, q in resolved.queues.items()
        }

    def depth(self, url: str) -> QueueDepth:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return QueueDepth(
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Every message of every DLQ (received and hidden for a minute, not deleted)."""
        letters: list[DeadLetter] = []
        for name, url in self.dlq.items():
            for _ in range(limit // 10):
                messages = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
                ).get("Messages", [])
                if not messages:
                    break
                letters += [DeadLetter(name, m.get("Body", "")) for m in messages]
        return letters


def backlog(
    connection: psycopg.Connection[tuple[Any, ...]],
    queues: Queues,
    accepted_orders: list[str],
    accepted_uploads: list[str],
) -> dict[str, int]:
    """What is still in motion; the drain waits for every value to be 0."""
    terminal = ["CONFIRMED", "FAILED", "CANCELLED", "COMPENSATION_FAILED"]
    left: dict[str, int] = {}
    left["orders not terminal"] = int(
        _rows(
            connection,
            "SELECT count(*) FROM orders.orders WHERE status <> ALL(%s)",
            [terminal],
        )[0][0]
    )
    known = int(
        _rows(
            connection,
            "SELECT count(*) FROM orders.orders WHERE order_id = ANY(%s)",
            [accepted_orders],
        )[0][0]
    )
    left["accepted orders missing"] = len(set(accepted_orders)) - known
    left["outbox unpublished"] = sum(unpublished(connection).values())
    left["confirmed without receipt"] = int(
        _rows(
            connection,
            "SELECT count(*) FROM orders.orders o WHERE o.status = 'CONFIRMED' AND NOT EXISTS"
            " (SELECT 1 FROM files.files f WHERE f.order_id = o.order_id)",
        )[0][0]
    )
    settled = int(
        _rows(
            connection,
            "SELECT count(*) FROM files.files WHERE file_id = ANY(%s)"
            " AND status IN ('PROCESSED', 'REJECTED')",
            [accepted_uploads],
        )[0][0]
    )
    left["uploads not settled"] = len(set(accepted_uploads)) - settled
    if _table_exists(connection, "notifier.notifications"):
        left["emails pending"] = int(
            _rows(
                connection,
                "SELECT count(*) FROM notifier.notifications"
                " WHERE status IN ('PENDING', 'SENDING')",
            )[0][0]
        )
    if _table_exists(connection, "notifier.deliveries"):
        left["webhook deliveries pending"] = int(
            _rows(
                connection,
                "SELECT count(*) FROM notifier.deliveries WHERE status IN ('PENDING', 'RETRYING')",
            )[0][0]
        )
    left["queued messages"] = sum(queues.depth(url).total for url in queues.source.values())
    return left


def notifier_emails(stub: notifier_pb2_grpc.NotifierServiceStub) -> list[Email]:
    found: list[Email] = []
    token = ""
    for _ in range(MAX_PAGES):
        reply = stub.ListNotifications(
            notifier_pb2.ListNotificationsRequest(page_size=PAGE, page_token=token), timeout=10
        )
        found += [
            Email(n.event_id, n.event_type, n.recipient, n.subject, _email_status(n.status))
            for n in reply.notifications
        ]
        token = reply.next_page_token
        if not token:
            break
    return found


def _email_status(status: notifier_pb2.NotificationStatus.ValueType) -> str:
    """SENT, FAILED, PENDING or SENDING (an unset status reads as PENDING)."""
    if status == notifier_pb2.NOTIFICATION_STATUS_UNSPECIFIED:
        return "PENDING"
    return notifier_pb2.NotificationStatus.Name(status).removeprefix("NOTIFICATION_STATUS_")


def notifier_deliveries(
    stub: notifier_pb2_grpc.NotifierServiceStub, webhook_id: str
) -> list[WebhookDelivery]:
    found: list[WebhookDelivery] = []
    token = ""
    for _ in range(MAX_PAGES):
        reply = stub.ListDeliveries(
            notifier_pb2.ListDeliveriesRequest(
                webhook_id=webhook_id, page_size=PAGE, page_token=token
            ),
            timeout=10,
        )
        found += [
            WebhookDelivery(
                d.event_id,
                d.webhook_id,
                notifier_pb2.DeliveryStatus.Name(d.status).removeprefix("DELIVERY_STATUS_"),
            )
            for d in reply.deliveries
        ]
        token = reply.next_page_token
        if not token:
            break
    return found


EMAIL_OUTCOME = re.compile(r'"email_outcome": "(\w+)"')


def email_outcomes(logs: Path) -> Counter[str]:
    """How often the notifier's processes logged each `email_outcome` (confirmed by SES's Send
    event, sent again after a lease, a duplicate SES reported, ...), from their log files."""
    found: Counter[str] = Counter()
    for path in sorted(logs.glob("notifier-*.log")):
        found.update(EMAIL_OUTCOME.findall(path.read_text(errors="replace")))
    return found


def ses_sent(emulator: Emulator) -> list[tuple[str, str]] | None:
    """(recipient, subject) of every email the emulator's SES accepted; None if unreadable."""
    try:
        emails = emulator.sent_emails()
    except (OSError, ValueError, EmulatorError):
        return None
    return [(recipient.lower(), email.subject) for email in emails for recipient in email.to]


def observe(
    *,
    connection: psycopg.Connection[tuple[Any, ...]],
    notifier_address: str,
    webhook_id: str,
    emulator: Emulator,
    queues: Queues,
    accepted_orders: list[str],
    accepted_uploads: list[str],
    webhook_received: list[tuple[str, str]],
    poison_markers: set[str],
) -> Observations:
    orders = dict(_rows(connection, "SELECT order_id, status FROM orders.orders"))
    charges = [
        Charge(p, o)
        for p, o in _rows(connection, "SELECT payment_id, order_id FROM orders.payment_charges")
    ]
    refunds = [
        Refund(p) for (p,) in _rows(connection, "SELECT payment_id FROM orders.payment_refunds")
    ]
    events = [
        Event(*row)
        for schema in ("orders", "files")
        for row in _rows(
            connection,
            f"SELECT event_id, event_type, subject FROM {schema}.outbox",  # noqa: S608
        )
    ]
    receipts = {
        o for (o,) in _rows(connection, "SELECT order_id FROM files.files WHERE kind = 'RECEIPT'")
    }
    uploads = dict.fromkeys(accepted_uploads, "")
    for file_id, status in _rows(
        connection,
        "SELECT file_id, status FROM files.files WHERE file_id = ANY(%s)",
        [accepted_uploads],
    ):
        uploads[file_id] = status
    with grpc.insecure_channel(notifier_address) as channel:
        stub = notifier_pb2_grpc.NotifierServiceStub(channel)
        emails = notifier_emails(stub)
        deliveries = notifier_deliveries(stub, webhook_id)
    return Observations(
        accepted=accepted_orders,
        orders=orders,
        charges=charges,
        refunds=refunds,
        unpublished=unpublished(connection),
        events=events,
        receipts=receipts,
        uploads=uploads,
        emails=emails,
        deliveries=deliveries,
        webhook_received=webhook_received,
        webhook_subscribed=bool(webhook_id),
        ses_sent=ses_sent(emulator),
        dead_letters=queues.dead_letters(),
        poison_markers=poison_markers,
    )
