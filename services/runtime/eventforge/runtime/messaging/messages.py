"""What arrives on a queue, parsed: our event envelopes and S3 object notifications.

A `Delivery` is one SQS message as the transport handed it over (a `ReceiveMessage` entry or a
Lambda SQS record), with its message attributes flattened to strings. `parse_delivery` turns it
into the units of work the handlers see, `IncomingMessage`s:

- an envelope (raw delivery: the body is the envelope JSON and the attributes are SQS message
  attributes; or the non-raw SNS envelope, whose `Message` is the envelope JSON and whose
  `MessageAttributes` carry the attributes) gives one message of kind ENVELOPE;
- an S3 event notification (raw or wrapped in the SNS envelope) gives **one message per
  record**, of kind S3, each with its own dedupe key: a redelivered notification whose first
  record was already handled repeats only the others;
- the `s3:TestEvent` S3 sends when notifications are configured gives one message of kind
  S3_TEST, which the runtime acknowledges without calling a handler;
- an SES email event (event publishing: `{"eventType": "Send", "mail": {...}}`) gives one
  message of kind SES, keyed `ses:<eventType>` (`ses:Send`, `ses:Delivery`, ...), deduplicated
  by the provider's message id and the event type;
- a scheduled job's tick (`{"job": NAME, "tick": TIME, "payload": {...}}`, `Job.tick_body`)
  gives one message of kind JOB, keyed `job:<NAME>`, deduplicated by the job and the tick's
  scheduled time: however often a tick is delivered, and to however many workers, it runs once.

Anything else raises `ParseError`.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from eventforge.events.v1.events_pb2 import Envelope
from eventforge.runtime.messaging.envelope import (
    REQUEST_ID,
    TRACE_HEADERS,
    EnvelopeError,
    decode,
    payload_of,
)
from eventforge.topology import JOB_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SES_PREFIX = "ses:"
"""Handler registry keys of SES email events: `ses:` + the event's `eventType`."""

S3_TEST_EVENT = "s3:TestEvent"
S3_OBJECT_CREATED = "s3:ObjectCreated"
"""Handler registry key of S3 object-created records (`s3:` + the event name's first part)."""

INBOX_KEY_LENGTH = 36
"""Width of the inbox's event_id column: longer keys are replaced by a uuid5 of themselves."""

_KEY_NAMESPACE = uuid.UUID("6f1c1f0e-8a52-5d3e-9c0b-2f4f7c1e9a10")


class ParseError(ValueError):
    """A message body is neither an envelope, an S3 notification, an SES email event nor a tick."""


class MessageKind(Enum):
    ENVELOPE = "envelope"
    S3 = "s3"
    S3_TEST = "s3_test"
    SES = "ses"
    JOB = "job"


@dataclass(frozen=True)
class Delivery:
    """One SQS message as delivered, independent of the transport (poll loop or Lambda)."""

    message_id: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Message attributes with a string value (String and Number types; Binary is dropped)."""
    receipt_handle: str | None = None
    receive_count: int = 1
    sent_timestamp_ms: int | None = None
    queue_name: str = ""

    @classmethod
    def from_sqs(cls, message: MessageTypeDef, queue_name: str) -> Delivery:
        """A `ReceiveMessage` entry (asked with all attribute and message-attribute names)."""
        system = message.get("Attributes", {})
        attributes = {
            name: value["StringValue"]
            for name, value in message.get("MessageAttributes", {}).items()
            if "StringValue" in value
        }
        return cls(
            message_id=message.get("MessageId", ""),
            body=message.get("Body", ""),
            attributes=attributes,
            receipt_handle=message.get("ReceiptHandle"),
            receive_count=_int(system.get("ApproximateReceiveCount")) or 1,
            sent_timestamp_ms=_int(system.get("SentTimestamp")),
            queue_name=queue_name,
        )

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any]) -> Delivery:
        """A record of a Lambda SQS event; the queue name comes from its `eventSourceARN`."""
        system = record.get("attributes") or {}
        attributes = {
            str(name): str(value["stringValue"])
            for name, value in (record.get("messageAttributes") or {}).items()
            if isinstance(value, Mapping) and value.get("stringValue") is not None
        }
        return cls(
            message_id=str(record.get("messageId", "")),
            body=str(record.get("body", "")),
            attributes=attributes,
            receipt_handle=record.get("receiptHandle"),
            receive_count=_int(system.get("ApproximateReceiveCount")) or 1,
            sent_timestamp_ms=_int(system.get("SentTimestamp")),
            queue_name=str(record.get("eventSourceARN", "")).rpartition(":")[2],
        )


@dataclass(frozen=True)
class S3Record:
    """One record of an S3 event notification; `key` is already URL-decoded."""

    bucket: str
    key: str
    event_name: str
    size: int | None = None
    etag: str | None = None
    sequencer: str | None = None
    version_id: str | None = None
    event_time: str | None = None


@dataclass(frozen=True)
class SesEvent:
    """One SES email event: what happened to which email, and the tags it was sent with."""

    event_type: str
    """SES's `eventType`: Send, Delivery, Bounce, Complaint, Reject, ..."""
    message_id: str
    """The id SES answered the send with."""
    tags: Mapping[str, tuple[str, ...]]
    """The email's tags (the sender's and SES's own `ses:*`), each with its values."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    """The event's own object (`send`, `bounce`, `reject`, ...), as SES wrote it."""

    def tag(self, name: str) -> str | None:
        """The first value of a tag, None when the email was not sent with it."""
        values = self.tags.get(name, ())
        return values[0] if values else None


@dataclass(frozen=True)
class JobTick:
    """One tick of a scheduled job: which job, when it was scheduled, and its fixed payload."""

    job: str
    tick: str
    """The scheduled time as the scheduler wrote it (ISO 8601, UTC); with `job`, the tick's id."""
    scheduled_at: datetime
    payload: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IncomingMessage:
    """One unit of work for a handler, parsed from a delivery."""

    kind: MessageKind
    event_type: str
    """The handler registry key: the envelope's type, or `s3:ObjectCreated` and the like."""
    event_id: str
    """The dedupe key recorded in the inbox (at most 36 characters)."""
    message_id: str
    queue_name: str = ""
    receive_count: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None
    """From the `request_id` attribute, else the envelope's; None if neither has one."""
    envelope: Envelope | None = None
    s3: S3Record | None = None
    ses: SesEvent | None = None
    job: JobTick | None = None

    @property
    def payload(self) -> Message:
        """The domain event inside the envelope (ENVELOPE messages only)."""
        if self.envelope is None:
            raise TypeError(f"a {self.kind.value} message has no envelope")
        return payload_of(self.envelope)

    @property
    def trace_carrier(self) -> dict[str, str]:
        """The W3C headers (`traceparent`, `tracestate`, `baggage`) to extract context from."""
        return {name: self.attributes[name] for name in TRACE_HEADERS if name in self.attributes}


def parse_delivery(delivery: Delivery) -> tuple[IncomingMessage, ...]:
    """The units of work of a delivery (at least one); raises ParseError."""
    body = delivery.body
    document = _json_object(body)
    attributes = dict(delivery.attributes)
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        attributes.update(_sns_attributes(document.get("MessageAttributes")))
        body = document["Message"]
        document = _json_object(body)

    def message(kind: MessageKind, event_type: str, event_id: str, **more: Any) -> IncomingMessage:
        return IncomingMessage(
            kind=kind,
            event_type=event_type,
            event_id=event_id,
            message_id=delivery.message_id,
            queue_name=delivery.queue_name,
            receive_count=delivery.receive_count,
            attributes=attributes,
            **more,
        )

    if document.get("Event") == S3_TEST_EVENT:
        test_id = inbox_key(f"s3-test:{document.get('RequestId') or delivery.message_id}")
        return (message(MessageKind.S3_TEST, S3_TEST_EVENT, test_id),)
    if isinstance(document.get("eventType"), str) and "mail" in document:
        event = _ses_event(document)
        key = inbox_key(f"{SES_PREFIX}{event.message_id}:{event.event_type}")
        return (message(MessageKind.SES, SES_PREFIX + event.event_type, key, ses=event),)
    if "job" in document and "tick" in document:
        tick = _job_tick(document)
        # The same tick written another way (`Z` or `+00:00`) is the same tick.
        key = inbox_key(f"{JOB_PREFIX}{tick.job}@{tick.scheduled_at.isoformat()}")
        request_id = attributes.get(REQUEST_ID) or None
        return (
            message(MessageKind.JOB, JOB_PREFIX + tick.job, key, job=tick, request_id=request_id),
        )
    if "Records" in document:
        records = [_s3_record(r) for r in _records(document["Records"])]
        return tuple(
            message(MessageKind.S3, s3_event_type(r), s3_dedupe_key(r), s3=r) for r in records
        )
    try:
        envelope = decode(body)
    except EnvelopeError as error:
        raise ParseError(str(error)) from error
    request_id = attributes.get(REQUEST_ID) or envelope.request_id or None
    return (
        message(
            MessageKind.ENVELOPE,
            envelope.event_type,
            inbox_key(envelope.event_id),
            envelope=envelope,
            request_id=request_id,
        ),
    )


def inbox_key(value: str) -> str:
    """`value` itself if it fits the inbox's event_id column, else a uuid5 of it."""
    if len(value) <= INBOX_KEY_LENGTH:
        return value
    return str(uuid.uuid5(_KEY_NAMESPACE, value))


def s3_dedupe_key(record: S3Record) -> str:
    """The same key for every delivery of one object event: bucket, key and sequencer (or ETag)."""
    version = record.sequencer or record.etag or record.event_time or ""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"s3:{record.bucket}/{record.key}@{version}"))


def s3_event_type(record: S3Record) -> str:
    """`ObjectCreated:Put` → `s3:ObjectCreated` (the handler registry key)."""
    return "s3:" + record.event_name.partition(":")[0]


def _json_object(body: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, TypeError) as error:
        raise ParseError(f"body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise ParseError(f"body is JSON {type(document).__name__}, not an object")
    return document


def _sns_attributes(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(name): str(value["Value"])
        for name, value in raw.items()
        if isinstance(value, Mapping)
        and value.get("Type") != "Binary"
        and value.get("Value") is not None
    }


def _records(raw: object) -> list[Mapping[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise ParseError("S3 notification has no records")
    if not all(isinstance(r, Mapping) for r in raw):
        raise ParseError("S3 notification record is not an object")
    return raw


def _s3_record(record: Mapping[str, Any]) -> S3Record:
    try:
        if record.get("eventSource", "aws:s3") != "aws:s3":
            raise ParseError(f"record from {record.get('eventSource')!r}, not S3")
        s3 = record["s3"]
        obj = s3["object"]
        return S3Record(
            bucket=str(s3["bucket"]["name"]),
            key=urllib.parse.unquote_plus(str(obj["key"])),
            event_name=str(record["eventName"]),
            size=_int(obj.get("size")),
            etag=obj.get("eTag"),
            sequencer=obj.get("sequencer"),
            version_id=obj.get("versionId"),
            event_time=record.get("eventTime"),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ParseError(f"malformed S3 record: {error!r}") from error


def _ses_event(document: Mapping[str, Any]) -> SesEvent:
    mail = document.get("mail")
    if not isinstance(mail, Mapping) or not isinstance(mail.get("messageId"), str):
        raise ParseError("SES event without mail.messageId")
    raw_tags = mail.get("tags") or {}
    if not isinstance(raw_tags, Mapping):
        raise ParseError("SES event tags are not an object")
    tags = {
        str(name): tuple(str(v) for v in values) if isinstance(values, list) else (str(values),)
        for name, values in raw_tags.items()
    }
    event_type = str(document["eventType"])
    # The event's own object is named after its type: "send", "bounce", "deliveryDelay", ...
    own = document.get(event_type[:1].lower() + event_type[1:].replace(" ", ""))
    return SesEvent(
        event_type=event_type,
        message_id=mail["messageId"],
        tags=tags,
        detail=dict(own) if isinstance(own, Mapping) else {},
    )


def _job_tick(document: Mapping[str, Any]) -> JobTick:
    job, tick, payload = document["job"], document["tick"], document.get("payload") or {}
    if not isinstance(job, str) or not job or not isinstance(tick, str):
        raise ParseError("tick without a job name or a tick time")
    if not isinstance(payload, Mapping):
        raise ParseError(f"tick of {job} has a payload that is not an object")
    try:
        scheduled_at = datetime.fromisoformat(tick)
    except ValueError as error:
        raise ParseError(f"tick of {job} at {tick!r}: not an ISO 8601 time") from error
    if scheduled_at.tzinfo is None:
        raise ParseError(f"tick of {job} at {tick!r} has no time zone (UTC expected)")
    return JobTick(
        job=job,
        tick=tick,
        scheduled_at=scheduled_at.astimezone(UTC),
        payload={str(k): str(v) for k, v in payload.items()},
    )


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None
