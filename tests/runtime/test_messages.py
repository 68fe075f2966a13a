"""Parsing deliveries: raw and SNS-wrapped envelopes, S3 notifications, S3's test event, garbage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from eventforge.events.v1.events_pb2 import OrderPlaced
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.messages import (
    INBOX_KEY_LENGTH,
    S3_OBJECT_CREATED,
    S3_TEST_EVENT,
    SES_PREFIX,
    Delivery,
    MessageKind,
    ParseError,
    inbox_key,
    parse_delivery,
)
from eventforge.topology import Job

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def envelope_json(request_id: str = "req-1") -> tuple[str, str]:
    envelope = new_envelope(
        OrderPlaced(order_id="o-1", customer_id="c-1"),
        source="orders",
        subject="o-1",
        request_id=request_id,
    )
    return encode(envelope), envelope.event_id


def s3_notification(*keys: str, sequencer: str | None = "0062E99A88DC407460") -> str:
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "eventTime": "2026-01-01T00:00:00.000Z",
            "s3": {
                "bucket": {"name": "eventforge-uploads"},
                "object": {
                    "key": key,
                    "size": 123,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    **({"sequencer": sequencer} if sequencer else {}),
                },
            },
        }
        for key in keys
    ]
    return json.dumps({"Records": records})


def sns_wrapped(message: str, attributes: dict[str, str] | None = None) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "sns-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:eventforge-orders-events",
            "Message": message,
            "MessageAttributes": {
                name: {"Type": "String", "Value": value}
                for name, value in (attributes or {}).items()
            },
        }
    )


def test_a_raw_envelope_with_its_message_attributes() -> None:
    body, event_id = envelope_json()
    delivery = Delivery(
        message_id="m-1",
        body=body,
        attributes={"event_type": "order.placed", "traceparent": TRACEPARENT, "other": "x"},
        receive_count=2,
        queue_name="q",
    )

    [message] = parse_delivery(delivery)

    assert message.kind is MessageKind.ENVELOPE
    assert message.event_type == "order.placed"
    assert message.event_id == event_id
    assert message.message_id == "m-1"
    assert message.queue_name == "q"
    assert message.receive_count == 2
    assert message.request_id == "req-1"  # from the envelope when the attribute is missing
    assert message.trace_carrier == {"traceparent": TRACEPARENT}
    payload = message.payload
    assert isinstance(payload, OrderPlaced)
    assert payload.order_id == "o-1"


def test_the_request_id_attribute_wins_over_the_envelope() -> None:
    body, _ = envelope_json(request_id="")
    [message] = parse_delivery(Delivery("m", body, {"request_id": "from-attribute"}))
    assert message.request_id == "from-attribute"
    [anonymous] = parse_delivery(Delivery("m", body))
    assert anonymous.request_id is None


def test_an_sns_wrapped_envelope_takes_its_attributes_from_the_sns_envelope() -> None:
    body, event_id = envelope_json()
    wrapped = sns_wrapped(
        body, {"event_type": "order.placed", "traceparent": TRACEPARENT, "request_id": "r-9"}
    )

    [message] = parse_delivery(Delivery("m-2", wrapped))

    assert message.kind is MessageKind.ENVELOPE
    assert message.event_id == event_id
    assert message.trace_carrier == {"traceparent": TRACEPARENT}
    assert message.request_id == "r-9"


def test_an_s3_notification_key_is_url_decoded() -> None:
    [message] = parse_delivery(Delivery("m-3", s3_notification("incoming/my+file%281%29.png")))

    assert message.kind is MessageKind.S3
    assert message.event_type == S3_OBJECT_CREATED
    assert message.s3 is not None
    assert message.s3.key == "incoming/my file(1).png"
    assert message.s3.bucket == "eventforge-uploads"
    assert message.s3.size == 123
    assert message.s3.event_name == "ObjectCreated:Put"
    assert len(message.event_id) == 36
    assert message.request_id is None
    with pytest.raises(TypeError):
        _ = message.payload


def test_each_s3_record_is_its_own_message_with_a_stable_dedupe_key() -> None:
    first = parse_delivery(Delivery("m-4", s3_notification("incoming/a.png", "incoming/b.png")))
    again = parse_delivery(Delivery("m-5", s3_notification("incoming/a.png", "incoming/b.png")))
    by_etag = parse_delivery(Delivery("m-6", s3_notification("incoming/a.png", sequencer=None)))

    assert [m.s3.key for m in first if m.s3] == ["incoming/a.png", "incoming/b.png"]
    assert len({m.event_id for m in first}) == 2
    assert [m.event_id for m in first] == [m.event_id for m in again]
    assert by_etag[0].event_id != first[0].event_id


def test_an_s3_notification_wrapped_in_sns_is_understood() -> None:
    [message] = parse_delivery(Delivery("m-7", sns_wrapped(s3_notification("incoming/x%20y.txt"))))
    assert message.kind is MessageKind.S3
    assert message.s3 is not None
    assert message.s3.key == "incoming/x y.txt"


def test_the_s3_test_event_is_recognised() -> None:
    body = json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2026-01-01T00:00:00.000Z",
            "Bucket": "eventforge-uploads",
            "RequestId": "R1",
            "HostId": "H1",
        }
    )
    [message] = parse_delivery(Delivery("m-8", body))
    assert message.kind is MessageKind.S3_TEST
    assert message.event_type == S3_TEST_EVENT


def ses_event(event_type: str = "Send", **own: object) -> str:
    """An SES event-publishing record, in the documented shape."""
    key = event_type[:1].lower() + event_type[1:]
    return json.dumps(
        {
            "eventType": event_type,
            "mail": {
                "timestamp": "2026-01-01T00:00:00.000Z",
                "source": "notifications@eventforge.example",
                "sendingAccountId": "123456789012",
                "messageId": "0100018c-ses-1",
                "destination": ["ada@example.com"],
                "tags": {
                    "ses:configuration-set": ["eventforge-email"],
                    "eventforge-notification-id": ["n-1"],
                },
            },
            key: own,
        }
    )


def test_an_ses_event_is_keyed_by_its_type_and_deduplicated_by_message_and_type() -> None:
    [send] = parse_delivery(Delivery("m-10", ses_event()))
    [again] = parse_delivery(Delivery("m-11", sns_wrapped(ses_event())))
    [reject] = parse_delivery(Delivery("m-12", ses_event("Reject", reason="Bad content")))
    assert send.kind is MessageKind.SES
    assert (send.event_type, reject.event_type) == (SES_PREFIX + "Send", SES_PREFIX + "Reject")
    assert send.ses is not None
    assert reject.ses is not None
    assert send.ses.message_id == "0100018c-ses-1"
    assert send.ses.tag("eventforge-notification-id") == "n-1"
    assert send.ses.tag("missing") is None
    assert reject.ses.detail == {"reason": "Bad content"}
    assert send.event_id == again.event_id != reject.event_id
    assert len(send.event_id) <= 36


@pytest.mark.parametrize(
    "body",
    [
        "not json {",
        json.dumps({"eventType": "Send", "mail": {}}),  # no message id
        json.dumps({"eventType": "Send", "mail": {"messageId": "m", "tags": ["x"]}}),
        "",
        "[1, 2]",
        '"a string"',
        json.dumps({"hello": "world"}),
        json.dumps({"eventId": "e-1", "eventType": "order.placed"}),  # no payload
        json.dumps({"eventId": "e", "eventType": "order.failed", "orderPlaced": {}}),
        json.dumps({"Records": []}),
        json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {}}]}),
        json.dumps({"Records": [{"eventSource": "aws:dynamodb"}]}),
        sns_wrapped("not json"),
    ],
)
def test_garbage_is_a_parse_error(body: str) -> None:
    with pytest.raises(ParseError):
        parse_delivery(Delivery("m-9", body))


def test_a_receive_message_entry_becomes_a_delivery() -> None:
    entry: Any = {
        "MessageId": "m-10",
        "ReceiptHandle": "rh",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000000"},
        "MessageAttributes": {
            "event_type": {"DataType": "String", "StringValue": "order.placed"},
            "attempt": {"DataType": "Number", "StringValue": "2"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00"},
        },
    }

    delivery = Delivery.from_sqs(entry, "queue-a")

    assert delivery == Delivery(
        message_id="m-10",
        body="{}",
        attributes={"event_type": "order.placed", "attempt": "2"},
        receipt_handle="rh",
        receive_count=3,
        sent_timestamp_ms=1_700_000_000_000,
        queue_name="queue-a",
    )


def test_a_lambda_record_becomes_a_delivery() -> None:
    record = {
        "messageId": "m-11",
        "receiptHandle": "rh",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
        "messageAttributes": {
            "request_id": {"stringValue": "r-1", "stringListValues": [], "dataType": "String"},
            "blob": {"binaryValue": "AA==", "dataType": "Binary"},
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:eventforge-notifier-orders",
    }

    delivery = Delivery.from_lambda(record)

    assert delivery.message_id == "m-11"
    assert delivery.attributes == {"request_id": "r-1"}
    assert delivery.queue_name == "eventforge-notifier-orders"
    assert delivery.receive_count == 1


def test_inbox_keys_fit_the_column() -> None:
    assert inbox_key("0" * 36) == "0" * 36
    long_key = inbox_key("x" * 100)
    assert len(long_key) == 36
    assert long_key == inbox_key("x" * 100)


# --- scheduled jobs' ticks ------------------------------------------------------------------------


def test_a_tick_is_a_job_message_keyed_by_its_job_and_its_time() -> None:
    job = Job("nightly-report", "cron(0 3 * * ? *)", "orders", "d", payload=(("scope", "all"),))
    body = job.tick_body("2026-12-07T03:00:00Z")
    [message] = parse_delivery(Delivery("m-1", body, queue_name="orders-jobs"))

    assert message.kind is MessageKind.JOB
    assert message.event_type == "job:nightly-report"
    assert message.job is not None
    assert (message.job.job, message.job.tick) == ("nightly-report", "2026-12-07T03:00:00Z")
    assert message.job.scheduled_at == datetime(2026, 12, 7, 3, tzinfo=UTC)
    assert message.job.payload == {"scope": "all"}
    assert message.request_id is None  # the cloud's tick has no attributes
    assert len(message.event_id) == INBOX_KEY_LENGTH
    # The same tick, written another way or delivered again, has the same key; another tick not.
    again = parse_delivery(Delivery("m-2", job.tick_body("2026-12-07T03:00:00+00:00")))
    later = parse_delivery(Delivery("m-3", job.tick_body("2026-12-07T03:01:00Z")))
    other = Job("other-report", "rate(1 hour)", "orders", "d").tick_body("2026-12-07T03:00:00Z")
    assert again[0].event_id == message.event_id
    assert later[0].event_id != message.event_id
    assert parse_delivery(Delivery("m-4", other))[0].event_id != message.event_id


def test_a_tick_sent_by_hand_carries_its_request_id() -> None:
    body = json.dumps({"job": "order-recovery", "tick": "2026-12-07T03:00:00.250Z"})
    [message] = parse_delivery(Delivery("m-1", body, {"request_id": "req-7"}))
    assert message.request_id == "req-7"
    assert message.job is not None
    assert message.job.payload == {}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"job": "", "tick": "2026-12-07T03:00:00Z"}, "without a job name"),
        ({"job": "x-job", "tick": 17}, "without a job name or a tick time"),
        ({"job": "x-job", "tick": "yesterday"}, "not an ISO 8601 time"),
        ({"job": "x-job", "tick": "2026-12-07T03:00:00"}, "no time zone"),
        ({"job": "x-job", "tick": "2026-12-07T03:00:00Z", "payload": [1]}, "not an object"),
    ],
)
def test_a_malformed_tick_is_unparseable(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_delivery(Delivery("m-1", json.dumps(document)))
