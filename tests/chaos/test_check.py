"""The chaos run's verdict rules on synthetic observations (no stack, no database)."""

from __future__ import annotations

import dataclasses

import pytest

from chaos.check import (
    Charge,
    DeadLetter,
    Email,
    Event,
    Observations,
    Refund,
    WebhookDelivery,
    extras,
    judge,
)

POISON = "chaos-poison-0123"


def clean() -> Observations:
    """Three settled orders (confirmed, failed after a refund, cancelled before a charge), one
    upload, every email and webhook sent once, only the poison in a DLQ."""
    events = [
        Event("e-placed-1", "order.placed", "o-1"),
        Event("e-confirmed-1", "order.confirmed", "o-1"),
        Event("e-placed-2", "order.placed", "o-2"),
        Event("e-failed-2", "order.failed", "o-2"),
        Event("e-placed-3", "order.placed", "o-3"),
        Event("e-cancelled-3", "order.cancelled", "o-3"),
        Event("e-receipt-1", "receipt.ready", "o-1"),
        Event("e-uploaded-f", "file.uploaded", "f-1"),
        Event("e-processed-f", "file.processed", "f-1"),
    ]
    emailed = {
        "e-confirmed-1": "Your order o-1 is confirmed",
        "e-failed-2": "We could not complete your order o-2",
        "e-cancelled-3": "Your order o-3 is cancelled",
        "e-receipt-1": "Your receipt for order o-1",
    }
    emails = [
        Email(
            event_id,
            next(e.event_type for e in events if e.event_id == event_id),
            "a@x.io",
            s,
            "SENT",
        )
        for event_id, s in emailed.items()
    ]
    delivered = [
        e.event_id for e in events if e.event_type not in ("order.placed", "file.uploaded")
    ]
    return Observations(
        accepted=["o-1", "o-2", "o-3"],
        orders={"o-1": "CONFIRMED", "o-2": "FAILED", "o-3": "CANCELLED"},
        charges=[Charge("p-1", "o-1"), Charge("p-2", "o-2")],
        refunds=[Refund("p-2")],
        unpublished={"orders": 0, "files": 0, "notifier": 0},
        events=events,
        receipts={"o-1"},
        uploads={"f-1": "PROCESSED"},
        emails=emails,
        deliveries=[WebhookDelivery(e, "w-1", "SUCCEEDED") for e in delivered],
        webhook_received=[(e, "/hook") for e in delivered],
        ses_sent=[("a@x.io", s) for s in emailed.values()],
        dead_letters=[DeadLetter("orders-orders", f"{POISON} {{ not json")],
        poison_markers={POISON},
    )


def test_a_clean_run_passes_with_every_counter_at_zero() -> None:
    verdict = judge(clean())
    assert verdict.summary() == (
        "orders=3 terminal=3 lost=0 double_charges=0 duplicate_notifications=0 dlq_unexpected=0 "
        "webhook_redeliveries=0"
    )
    assert verdict.ok
    assert verdict.poison_dead_lettered == 1
    assert verdict.details == {}


def test_orders_not_terminal_or_missing_are_lost() -> None:
    observed = clean()
    observed.accepted.append("o-4")  # accepted, never stored
    observed.orders = {**observed.orders, "o-5": "PENDING"}  # stored, never accepted, stuck
    observed.orders["o-2"] = "COMPENSATING"
    verdict = judge(observed)
    assert verdict.orders == 4
    assert verdict.terminal == 2
    # o-4 missing, o-2 not terminal, o-5 not terminal; o-2's failed event is still recorded.
    assert verdict.lost == 3
    assert not verdict.ok
    assert any("accepted orders missing: o-4" in line for line in verdict.details["lost"])


def test_undelivered_events_and_work_count_as_lost() -> None:
    observed = clean()
    observed.unpublished = {"orders": 2, "files": 0}
    observed.receipts = set()  # o-1 confirmed, no receipt
    observed.uploads = {"f-1": "PROCESSING", "f-2": ""}
    observed.emails = [e for e in observed.emails if e.event_id != "e-failed-2"]
    observed.emails[0] = dataclasses.replace(observed.emails[0], status="PENDING")
    observed.deliveries = [d for d in observed.deliveries if d.event_id != "e-cancelled-3"]
    observed.deliveries[0] = dataclasses.replace(observed.deliveries[0], status="RETRYING")
    verdict = judge(observed)
    lines = "\n".join(verdict.details["lost"])
    assert "2 orders outbox rows never published" in lines
    assert "1 confirmed orders without a receipt: o-1" in lines
    assert "2 uploads never settled" in lines
    assert "1 events never emailed: order.failed o-2" in lines
    assert "1 emails not sent" in lines
    assert "1 events without a webhook delivery: order.cancelled o-3" in lines
    assert "1 webhook deliveries not succeeded" in lines
    assert verdict.lost == 2 + 1 + 2 + 1 + 1 + 1 + 1


def test_without_a_webhook_missing_deliveries_are_not_lost() -> None:
    observed = clean()
    observed.webhook_subscribed = False
    observed.deliveries = []
    observed.webhook_received = []
    assert judge(observed).lost == 0


@pytest.mark.parametrize(
    ("charges", "refunds", "statuses", "expected"),
    [
        # A second charge for a confirmed order: charged twice, and not exactly one net charge.
        ([Charge("p-1", "o-1"), Charge("p-1b", "o-1")], [], {}, 2),
        # The second charge refunded: one net charge, fine.
        ([Charge("p-1", "o-1"), Charge("p-1b", "o-1")], [Refund("p-1b")], {}, 0),
        # A refund of a payment that never was.
        ([Charge("p-1", "o-1")], [Refund("p-ghost")], {}, 1),
        # A failed order whose charge was never refunded.
        ([Charge("p-1", "o-1"), Charge("p-2", "o-2")], [], {}, 1),
        # A confirmed order never charged.
        ([], [], {"o-2": "CANCELLED"}, 1),
        # A refund recorded twice for one payment.
        ([Charge("p-1", "o-1"), Charge("p-2", "o-2")], [Refund("p-2"), Refund("p-2")], {}, 1),
    ],
)
def test_double_charges(
    charges: list[Charge], refunds: list[Refund], statuses: dict[str, str], expected: int
) -> None:
    observed = clean()
    observed.charges = charges
    observed.refunds = refunds
    observed.orders = {**observed.orders, **statuses}
    assert judge(observed).double_charges == expected


def test_compensation_failed_orders_may_keep_their_charge() -> None:
    observed = clean()
    observed.orders = {**observed.orders, "o-2": "COMPENSATION_FAILED"}
    observed.refunds = []
    assert judge(observed).double_charges == 0


def test_duplicate_notifications_from_every_source() -> None:
    observed = clean()
    first = observed.emails[0]
    observed.emails.append(dataclasses.replace(first, subject="another subject"))  # same event
    observed.emails.append(dataclasses.replace(first, event_id="e-other"))  # same subject
    observed.events.append(Event("e-confirmed-1b", "order.confirmed", "o-1"))  # twice confirmed
    observed.deliveries.append(observed.deliveries[0])
    observed.webhook_received += [observed.webhook_received[0]] * 2
    assert observed.ses_sent is not None
    observed.ses_sent.append(observed.ses_sent[0])
    verdict = judge(observed)
    lines = "\n".join(verdict.details["duplicate_notifications"])
    assert "1 emails per (event, recipient) beyond one" in lines
    assert "1 emails per (recipient, subject) beyond one" in lines
    assert "1 events per (subject, type) beyond one" in lines
    assert "1 successful deliveries per (event, endpoint) beyond one" in lines
    assert "1 SES emails per (recipient, subject) beyond one" in lines
    assert verdict.duplicate_notifications == 5
    # A webhook POSTed again is reported, not failed: receivers deduplicate on the event id.
    assert verdict.webhook_redeliveries == 2
    redelivered = "\n".join(verdict.details["webhook_redeliveries"])
    assert "2 webhook POSTs acknowledged per (event, endpoint) beyond one" in redelivered


def test_retried_deliveries_and_repeated_uploads_are_not_duplicates() -> None:
    observed = clean()
    observed.deliveries.append(dataclasses.replace(observed.deliveries[0], status="FAILED"))
    observed.events.append(Event("e-uploaded-f-again", "file.uploaded", "f-1"))
    verdict = judge(observed)
    assert verdict.duplicate_notifications == 0
    assert verdict.lost == 1  # the failed delivery attempt record is not SUCCEEDED


def test_dead_letters_other_than_the_poison_are_unexpected() -> None:
    observed = clean()
    observed.dead_letters.append(DeadLetter("notifier-orders", '{"eventId": "e-1"}'))
    observed.poison_markers = {POISON, "chaos-poison-missing"}
    verdict = judge(observed)
    assert verdict.dlq_unexpected == 1
    assert verdict.poison_dead_lettered == 1
    assert "notifier-orders" in verdict.details["dlq_unexpected"][0]


def test_unknown_ses_outbox_is_not_counted() -> None:
    observed = clean()
    observed.ses_sent = None
    assert judge(observed).duplicate_notifications == 0


def test_extras_counts_surplus_occurrences() -> None:
    assert sorted(extras(["a", "b", "a", "a", "c", "c"])) == ["a x3", "a x3", "c x2"]
    assert extras([]) == []
