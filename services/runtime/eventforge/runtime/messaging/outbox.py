"""Record events in the service's outbox, in the caller's transaction, with the trace context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import Engine, delete, insert
from sqlalchemy.orm import Session

from eventforge.events.v1.events_pb2 import Envelope
from eventforge.runtime.context import current_request_id
from eventforge.runtime.messaging.envelope import EVENT_TYPE, REQUEST_ID, encode, new_envelope
from eventforge.runtime.messaging.schema import outbox_table
from eventforge.runtime.messaging.wakeup import notify_after_commit
from eventforge.runtime.settings import ServiceName
from eventforge.topology import TOPOLOGY

# Built once: constructing the statement per event cost more CPU than executing it.
INSERT_OUTBOX = insert(outbox_table)


def notify_channel(service: ServiceName) -> str:
    """The PostgreSQL LISTEN/NOTIFY channel that wakes a service's relays: notified after a
    transaction that recorded events commits, by sessions of `db.session_factory`.
    """
    return f"{service}_outbox"


def message_attributes(envelope: Envelope) -> dict[str, str]:
    """Attributes published with the event: its type, request id and the W3C trace headers."""
    attributes = {EVENT_TYPE: envelope.event_type}
    if envelope.request_id:
        attributes[REQUEST_ID] = envelope.request_id
    propagate.inject(attributes)
    return attributes


def outbox_row(
    service: ServiceName, payload: Message, *, subject: str
) -> tuple[Envelope, dict[str, Any]]:
    """An event the current request (or message) causes, and its outbox row."""
    envelope = new_envelope(
        payload, source=service, subject=subject, request_id=current_request_id()
    )
    return envelope, {
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "topic": TOPOLOGY.topic_published_by(service).name,
        "subject": subject,
        "body": encode(envelope),
        "attributes": message_attributes(envelope),
        "request_id": envelope.request_id or None,
        "created_at": datetime.now(UTC),
    }


def record_event(
    session: Session, service: ServiceName, payload: Message, *, subject: str
) -> Envelope:
    """Add an event to the outbox; it is published only if the session's transaction commits."""
    notify_after_commit(session, notify_channel(service))
    envelope, row = outbox_row(service, payload, subject=subject)
    session.execute(INSERT_OUTBOX, row)
    return envelope


def purge_published(engine: Engine, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete outbox rows published more than `older_than` ago; how many (unpublished stay)."""
    cutoff = (now or datetime.now(UTC)) - older_than
    with engine.begin() as connection:
        statement = delete(outbox_table).where(outbox_table.c.published_at < cutoff)
        return int(connection.execute(statement).rowcount)
