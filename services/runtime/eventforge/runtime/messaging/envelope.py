"""The one envelope codec: domain events wrapped in `Envelope`, carried as protobuf JSON."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Final

from google.protobuf import json_format
from google.protobuf.message import Message

from eventforge.events.v1.events_pb2 import Envelope

PAYLOAD_ONEOF: Final = "payload"

# Message attributes every published event carries (besides the W3C trace headers).
EVENT_TYPE = "event_type"
REQUEST_ID = "request_id"
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


class EnvelopeError(ValueError):
    """A message body is not a valid envelope."""


@cache
def _field_by_message() -> dict[str, str]:
    fields = Envelope.DESCRIPTOR.oneofs_by_name[PAYLOAD_ONEOF].fields
    return {field.message_type.full_name: field.name for field in fields if field.message_type}


def event_type_of_field(field_name: str) -> str:
    """`order_placed` → `order.placed`: the first underscore separates aggregate and fact."""
    aggregate, _, fact = field_name.partition("_")
    return f"{aggregate}.{fact}"


def event_types() -> list[str]:
    """Every event type of the catalog, in declaration order."""
    return [event_type_of_field(name) for name in _field_by_message().values()]


def new_envelope(
    payload: Message, *, source: str, subject: str, request_id: str | None = None
) -> Envelope:
    """Wrap a domain event with a fresh id and the current time."""
    field = _field_by_message().get(payload.DESCRIPTOR.full_name)
    if field is None:
        raise TypeError(f"{payload.DESCRIPTOR.full_name} is not an event of the catalog")
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event_type_of_field(field),
        source=source,
        subject=subject,
        request_id=request_id or "",
    )
    envelope.occurred_at.FromDatetime(datetime.now(UTC))
    getattr(envelope, field).CopyFrom(payload)
    return envelope


def payload_of(envelope: Envelope) -> Message:
    """The event inside the envelope."""
    field = envelope.WhichOneof(PAYLOAD_ONEOF)
    if field is None:
        raise EnvelopeError(f"envelope {envelope.event_id} has no payload")
    payload: Message = getattr(envelope, field)
    return payload


def encode(envelope: Envelope) -> str:
    """Compact protobuf JSON of the envelope."""
    return json_format.MessageToJson(envelope, indent=None, sort_keys=True)


def decode(body: str | bytes) -> Envelope:
    """Parse and check an envelope; unknown fields (newer producers) are ignored."""
    try:
        envelope = json_format.Parse(body, Envelope(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as error:
        raise EnvelopeError(f"not an envelope: {error}") from error
    if not envelope.event_id or not envelope.event_type:
        raise EnvelopeError("envelope lacks event_id or event_type")
    field = envelope.WhichOneof(PAYLOAD_ONEOF)
    if field is None or event_type_of_field(field) != envelope.event_type:
        raise EnvelopeError(f"event_type {envelope.event_type!r} does not match payload {field!r}")
    return envelope
