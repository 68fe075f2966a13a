"""The verdict of a chaos run, computed from what was observed after the drain.

Pure functions over plain data (`Observations`), so the rules are tested on synthetic data
(`tests/chaos/test_check.py`); `chaos.collect` gathers the real observations.

- **lost**: accepted orders that are missing or not terminal (and any other order left
  non-terminal), outbox rows never published, confirmed orders without a receipt, accepted
  uploads never settled, events that warrant an email or a webhook delivery without one, and
  emails or webhook deliveries that were never sent.
- **double_charges**: an order with more than one net charge (charges - refunds > 1), a refund
  without a charge, a confirmed order without exactly one net charge, or a failed or cancelled
  order that keeps a net charge.
- **duplicate_notifications**: more than one email per (event, recipient) or per (recipient,
  subject) — the notifier's records and the emulator's SES outbox alike: a mailbox does not
  deduplicate —, more than one successful delivery per (event, endpoint) in the notifier's
  records, or more than one event of one kind about one order or file.
- **webhook_redeliveries** (reported, not a failure): POSTs the receiver acknowledged beyond one
  per (event, endpoint). Webhooks are at least once by contract — a sender killed between the
  endpoint's 2xx and its commit POSTs again — and receivers deduplicate on
  `EventForge-Event-Id`, so a redelivery is not a duplicate the receiver acts on.
- **dlq_unexpected**: dead letters that are not the injected poison.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TERMINAL = frozenset({"CONFIRMED", "FAILED", "CANCELLED", "COMPENSATION_FAILED"})
UNCHARGED = frozenset({"FAILED", "CANCELLED"})
EMAILED_EVENTS = frozenset(
    {"order.confirmed", "order.failed", "order.cancelled", "receipt.ready", "file.rejected"}
)
"""Events that warrant exactly one email (every order and upload of a run has an address)."""
DELIVERED_EVENTS = frozenset(
    {
        "order.confirmed",
        "order.failed",
        "order.cancelled",
        "order.compensation_failed",
        "receipt.ready",
        "file.processed",
        "file.rejected",
    }
)
"""Events the notifier consumes: each goes to every webhook subscribed to it."""

EXAMPLES = 5


@dataclass(frozen=True)
class Charge:
    payment_id: str
    order_id: str


@dataclass(frozen=True)
class Refund:
    payment_id: str


@dataclass(frozen=True)
class Event:
    """One outbox row: an event about one subject (an order id, a file id)."""

    event_id: str
    event_type: str
    subject: str


@dataclass(frozen=True)
class Email:
    """An email the notifier recorded (status PENDING, SENDING, SENT or FAILED)."""

    event_id: str
    event_type: str
    recipient: str
    subject: str
    status: str


@dataclass(frozen=True)
class WebhookDelivery:
    """A delivery the notifier recorded (status PENDING, RETRYING, SUCCEEDED or FAILED)."""

    event_id: str
    webhook_id: str
    status: str


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    body: str


@dataclass
class Observations:
    """Everything the checks look at, as plain data."""

    accepted: list[str]
    """Order ids CreateOrder answered OK."""
    orders: Mapping[str, str]
    """Every order in the database → its status."""
    charges: list[Charge] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    unpublished: Mapping[str, int] = field(default_factory=dict)
    """Outbox rows never published, per service."""
    events: list[Event] = field(default_factory=list)
    """Every event of the orders' and the files' outboxes."""
    receipts: set[str] = field(default_factory=set)
    """Order ids that have a receipt."""
    uploads: Mapping[str, str] = field(default_factory=dict)
    """Accepted upload file id → its status now (missing: not found)."""
    emails: list[Email] = field(default_factory=list)
    deliveries: list[WebhookDelivery] = field(default_factory=list)
    webhook_received: list[tuple[str, str]] = field(default_factory=list)
    """(event id, endpoint path) of every POST the receiver acknowledged."""
    webhook_subscribed: bool = True
    """A webhook was registered for every order and file event: each should be delivered."""
    ses_sent: list[tuple[str, str]] | None = None
    """(recipient, subject) of every email the emulator's SES accepted; None if unknown."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    poison_markers: set[str] = field(default_factory=set)


@dataclass
class Verdict:
    orders: int
    terminal: int
    lost: int
    double_charges: int
    duplicate_notifications: int
    dlq_unexpected: int
    poison_dead_lettered: int
    webhook_redeliveries: int = 0
    details: dict[str, list[str]] = field(default_factory=dict)
    """Counter name → its contributions (each with a few examples)."""

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.double_charges == 0
            and self.duplicate_notifications == 0
            and self.dlq_unexpected == 0
            and self.terminal == self.orders
        )

    def summary(self) -> str:
        return (
            f"orders={self.orders} terminal={self.terminal} lost={self.lost} "
            f"double_charges={self.double_charges} "
            f"duplicate_notifications={self.duplicate_notifications} "
            f"dlq_unexpected={self.dlq_unexpected} "
            f"webhook_redeliveries={self.webhook_redeliveries}"
        )


class _Tally:
    """Adds up one counter from named contributions, keeping examples of each."""

    def __init__(self) -> None:
        self.total = 0
        self.lines: list[str] = []

    def add(self, what: str, items: Iterable[object]) -> None:
        found = list(items)
        if not found:
            return
        self.total += len(found)
        examples = ", ".join(str(item) for item in found[:EXAMPLES])
        more = f" (+{len(found) - EXAMPLES} more)" if len(found) > EXAMPLES else ""
        self.lines.append(f"{len(found)} {what}: {examples}{more}")

    def add_count(self, what: str, count: int) -> None:
        if count:
            self.total += count
            self.lines.append(f"{count} {what}")


def extras(keys: Iterable[object]) -> list[str]:
    """One entry per surplus occurrence of a key (a key seen 3 times gives 2)."""
    return [f"{key} x{n}" for key, n in Counter(keys).items() if n > 1 for _ in range(n - 1)]


def lost(observed: Observations) -> _Tally:
    tally = _Tally()
    orders = observed.orders
    tally.add("accepted orders missing", [o for o in observed.accepted if o not in orders])
    tally.add(
        "accepted orders not terminal",
        [
            f"{o} {orders[o]}"
            for o in observed.accepted
            if o in orders and orders[o] not in TERMINAL
        ],
    )
    accepted = set(observed.accepted)
    tally.add(
        "other orders not terminal",
        [f"{o} {s}" for o, s in orders.items() if o not in accepted and s not in TERMINAL],
    )
    for service, count in sorted(observed.unpublished.items()):
        tally.add_count(f"{service} outbox rows never published", count)
    tally.add(
        "confirmed orders without a receipt",
        [o for o, s in orders.items() if s == "CONFIRMED" and o not in observed.receipts],
    )
    tally.add(
        "uploads never settled",
        [f"{f} {s or 'missing'}" for f, s in observed.uploads.items() if s not in SETTLED_FILES],
    )
    emailed = {e.event_id for e in observed.emails}
    tally.add(
        "events never emailed",
        [
            f"{e.event_type} {e.subject}"
            for e in observed.events
            if e.event_type in EMAILED_EVENTS and e.event_id not in emailed
        ],
    )
    tally.add(
        "emails not sent",
        [f"{e.event_type} {e.event_id} {e.status}" for e in observed.emails if e.status != "SENT"],
    )
    if observed.webhook_subscribed:
        delivered = {d.event_id for d in observed.deliveries}
        tally.add(
            "events without a webhook delivery",
            [
                f"{e.event_type} {e.subject}"
                for e in observed.events
                if e.event_type in DELIVERED_EVENTS and e.event_id not in delivered
            ],
        )
    tally.add(
        "webhook deliveries not succeeded",
        [f"{d.event_id} {d.status}" for d in observed.deliveries if d.status != "SUCCEEDED"],
    )
    return tally


SETTLED_FILES = frozenset({"PROCESSED", "REJECTED"})


def double_charges(observed: Observations) -> _Tally:
    tally = _Tally()
    charged = {c.payment_id: c.order_id for c in observed.charges}
    refunded = Counter(r.payment_id for r in observed.refunds)
    tally.add("refunds without a charge", [p for p in refunded if p not in charged])
    tally.add("payments refunded more than once", extras(r.payment_id for r in observed.refunds))
    net: Counter[str] = Counter()
    for payment_id, order_id in charged.items():
        net[order_id] += 1 - min(refunded[payment_id], 1)
    tally.add("orders charged more than once", [f"{o} net {n}" for o, n in net.items() if n > 1])
    tally.add(
        "confirmed orders without exactly one net charge",
        [
            f"{o} net {net[o]}"
            for o, s in observed.orders.items()
            if s == "CONFIRMED" and net[o] != 1
        ],
    )
    tally.add(
        "failed or cancelled orders still charged",
        [f"{o} {s} net {net[o]}" for o, s in observed.orders.items() if s in UNCHARGED and net[o]],
    )
    return tally


def duplicate_notifications(observed: Observations) -> _Tally:
    tally = _Tally()
    emails = observed.emails
    tally.add(
        "emails per (event, recipient) beyond one",
        extras((e.event_id, e.recipient) for e in emails),
    )
    tally.add(
        "emails per (recipient, subject) beyond one",
        extras((e.recipient, e.subject) for e in emails),
    )
    tally.add(
        "events per (subject, type) beyond one",
        extras(
            (e.subject, e.event_type)
            for e in observed.events
            if e.event_type in DELIVERED_EVENTS or e.event_type == "order.placed"
        ),
    )
    tally.add(
        "successful deliveries per (event, endpoint) beyond one",
        extras((d.event_id, d.webhook_id) for d in observed.deliveries if d.status == "SUCCEEDED"),
    )
    if observed.ses_sent is not None:
        tally.add("SES emails per (recipient, subject) beyond one", extras(observed.ses_sent))
    return tally


def webhook_redeliveries(observed: Observations) -> _Tally:
    tally = _Tally()
    tally.add(
        "webhook POSTs acknowledged per (event, endpoint) beyond one",
        extras(observed.webhook_received),
    )
    return tally


def is_poison(letter: DeadLetter, markers: set[str]) -> bool:
    return any(marker in letter.body for marker in markers)


def dlq_unexpected(observed: Observations) -> _Tally:
    tally = _Tally()
    tally.add(
        "dead letters that are not the injected poison",
        [
            f"{d.queue}: {d.body[:80]!r}"
            for d in observed.dead_letters
            if not is_poison(d, observed.poison_markers)
        ],
    )
    return tally


def judge(observed: Observations) -> Verdict:
    """Every counter of the run, with the details behind each."""
    tallies = {
        "lost": lost(observed),
        "double_charges": double_charges(observed),
        "duplicate_notifications": duplicate_notifications(observed),
        "dlq_unexpected": dlq_unexpected(observed),
        "webhook_redeliveries": webhook_redeliveries(observed),
    }
    poisoned = {
        marker
        for marker in observed.poison_markers
        for letter in observed.dead_letters
        if marker in letter.body
    }
    orders = observed.orders
    return Verdict(
        orders=len(observed.accepted),
        terminal=sum(1 for o in observed.accepted if orders.get(o) in TERMINAL),
        lost=tallies["lost"].total,
        double_charges=tallies["double_charges"].total,
        duplicate_notifications=tallies["duplicate_notifications"].total,
        dlq_unexpected=tallies["dlq_unexpected"].total,
        poison_dead_lettered=len(poisoned),
        webhook_redeliveries=tallies["webhook_redeliveries"].total,
        details={name: tally.lines for name, tally in tallies.items() if tally.lines},
    )
