"""The envelope codec and its agreement with the topology's event catalog."""

from __future__ import annotations

import json

import pytest

from eventforge.events.v1 import events_pb2
from eventforge.runtime.messaging.envelope import (
    EnvelopeError,
    decode,
    encode,
    event_types,
    new_envelope,
    payload_of,
)
from eventforge.topology import TOPOLOGY


def test_round_trip_keeps_every_field() -> None:
    envelope = new_envelope(
        events_pb2.OrderPlaced(order_id="o-1", customer_id="c-1"),
        source="orders",
        subject="o-1",
        request_id="r-1",
    )
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert decoded.event_type == "order.placed"
    assert payload_of(decoded) == events_pb2.OrderPlaced(order_id="o-1", customer_id="c-1")


def test_json_is_readable_by_humans() -> None:
    envelope = new_envelope(events_pb2.ReceiptReady(order_id="o-2"), source="files", subject="o-2")
    body = json.loads(encode(envelope))
    assert body["eventType"] == "receipt.ready"
    assert body["receiptReady"] == {"orderId": "o-2"}


def test_catalog_matches_the_topics() -> None:
    carried = sorted(t for topic in TOPOLOGY.topics for t in topic.event_types)
    assert carried == sorted(event_types())


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "{}",
        '{"eventId": "e", "eventType": "order.placed"}',
        '{"eventId": "e", "eventType": "order.failed", "orderPlaced": {}}',
        b"\xff\xfe",
    ],
)
def test_invalid_bodies_are_refused(body: str | bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(body)


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    envelope = new_envelope(events_pb2.OrderPlaced(order_id="o"), source="orders", subject="o")
    body = json.loads(encode(envelope))
    body["futureField"] = 1
    assert decode(json.dumps(body)).event_id == envelope.event_id


def test_only_catalog_events_can_be_wrapped() -> None:
    with pytest.raises(TypeError):
        new_envelope(events_pb2.Envelope(), source="orders", subject="x")
