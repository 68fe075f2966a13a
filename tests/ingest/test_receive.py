"""Receiving deliveries without a database: mapping, refusals, duplicates and ignored types."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from eventforge.ingest.bootstrap import LOCAL_SECRETS
from eventforge.ingest.domain.model import PaymentFailed, PaymentSucceeded
from eventforge.ingest.domain.refusals import (
    BadSignature,
    InvalidPayload,
    MalformedPayload,
    Refused,
    StaleEvent,
    StaleSignature,
    UnknownSource,
)
from eventforge.ingest.domain.sources import declared_sources
from eventforge.ingest.service_layer.receive import Inbound, Receipt, receive
from tests.fixtures.ingest import (
    ACQUIRER_SCHEME,
    acquirer_delivery,
    payments_body,
    payments_headers,
)
from tests.ingest.fakes import FakeUnitOfWork

INBOUND = Inbound(
    sources=declared_sources(),
    secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()},
    retention=timedelta(days=30),
)


def _receive(
    source: str, headers: dict[str, str], body: bytes, uow: FakeUnitOfWork | None = None
) -> Receipt:
    return asyncio.run(
        receive(
            inbound=INBOUND,
            source_name=source,
            headers=headers,
            body=body,
            uow=uow or FakeUnitOfWork(),
            now=datetime.now(UTC),
        )
    )


def test_a_payment_provider_event_becomes_one_eventforge_event_once() -> None:
    uow = FakeUnitOfWork()
    body = payments_body("evt_1", payment_id="pay_1", amount_minor=500, currency="USD")
    first = _receive("payments", payments_headers(body), body, uow)
    assert (first.outcome, first.event_type) == ("recorded", "payment.succeeded")
    assert uow.published == [PaymentSucceeded("pay_1", 500, "USD")]
    # Redelivered (newly signed, as providers retry): acknowledged, nothing new.
    again = _receive("payments", payments_headers(body), body, uow)
    assert again.outcome == "duplicate"
    assert len(uow.published) == 1


def test_the_acquirers_types_map_to_payment_events() -> None:
    uow = FakeUnitOfWork()
    headers, body = acquirer_delivery("capture-1", "capture.declined", payment_reference="pay_2")
    receipt = _receive("acquirer", headers, body, uow)
    assert (receipt.outcome, receipt.event_type) == ("recorded", "payment.failed")
    assert uow.published == [PaymentFailed("pay_2", "insufficient funds")]
    # The same id from another source is another event.
    body = payments_body("capture-1", "payment.failed", payment_id="pay_2")
    assert _receive("payments", payments_headers(body), body, uow).outcome == "recorded"


def test_types_the_source_sends_but_eventforge_does_not_consume_are_ignored() -> None:
    uow = FakeUnitOfWork()
    body = payments_body("evt_r", "payment.refunded", amount_minor=5)
    receipt = _receive("payments", payments_headers(body), body, uow)
    assert (receipt.outcome, receipt.event_type) == ("ignored", None)
    assert uow.published == []


def _refusal(source: str, headers: dict[str, str], body: bytes) -> type[Refused]:
    with pytest.raises(Refused) as refused:
        _receive(source, headers, body)
    return type(refused.value)


def test_each_refusal_has_its_reason() -> None:
    body = payments_body()
    assert _refusal("billing", payments_headers(body), body) is UnknownSource
    assert _refusal("payments", payments_headers(body, secret="guess"), body) is BadSignature
    old = int(time.time()) - 301
    assert _refusal("payments", payments_headers(body, timestamp=old), body) is StaleSignature
    headers, acquirer_body = acquirer_delivery()
    headers["x-signature"] = "sha256=" + "0" * 64
    assert _refusal("acquirer", headers, acquirer_body) is BadSignature


def test_a_signed_event_older_than_the_retention_is_refused_as_a_possible_replay() -> None:
    created = int(time.time()) - 31 * 24 * 3600
    body = payments_body(created=created)
    assert _refusal("payments", payments_headers(body), body) is StaleEvent


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "payment.succeeded"}',
        json.dumps({"id": "e", "type": "payment.succeeded", "created": "today", "data": {}}),
        payments_body(amount_minor="12"),
        payments_body(amount_minor=True, currency="EUR"),
        payments_body(currency="EUR"),
        payments_body("evt_f", "payment.failed", reason=None),
    ],
)
def test_a_payload_not_shaped_as_the_source_sends_is_malformed(body: bytes | str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    assert _refusal("payments", payments_headers(raw), raw) is MalformedPayload


@pytest.mark.parametrize(
    "body",
    [
        payments_body("evt with spaces"),
        payments_body(payment_id=""),
        payments_body(amount_minor=-1, currency="EUR"),
        payments_body(amount_minor=1, currency="euro"),
        payments_body("evt_f", "payment.failed", reason="  "),
        payments_body(created=10**15),
    ],
)
def test_a_payload_with_wrong_values_is_invalid(body: bytes) -> None:
    assert _refusal("payments", payments_headers(body), body) is InvalidPayload


def test_the_acquirers_headers_and_time_are_checked() -> None:
    headers, body = acquirer_delivery()
    del headers["x-event-id"]
    assert _refusal("acquirer", headers, body) is MalformedPayload
    document = json.loads(acquirer_delivery()[1])
    for occurred_at in ("yesterday", "2026-12-08T10:00:00"):
        headers, _ = acquirer_delivery()
        raw = json.dumps({**document, "occurred_at": occurred_at}).encode()
        headers["x-signature"] = ACQUIRER_SCHEME.sign(LOCAL_SECRETS["acquirer"], raw)
        assert _refusal("acquirer", headers, raw) is InvalidPayload
