"""An order's saga as a timeline: its steps, compensations, events, and the emails and webhook
deliveries it caused.

`GetOrder` returns the order's current state only (no history), so the steps come from the
spans: the traces holding a span with the order's `eventforge.order_id` (the saga's step spans
and files' receipt span carry it) are the order's traces; in them, the `saga …` spans are the
steps (`saga compensate` the compensations), PRODUCER spans the events it published, CONSUMER
spans where they were consumed. The notifier sends emails and webhooks from its dispatcher,
in traces of their own, so those are found by event id: the `email send` and `webhook
deliver` spans of the order's event ids, and the notifier's own records of them
(`ListNotifications` and `ListDeliveries` by event id), which say whether each was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventforge.dashboard.spans import SpanIndex, short_service
from eventforge.dashboard.views import format_ms, service_colour

if TYPE_CHECKING:
    from eventforge.dashboard.sources import Sources
    from eventforge.runtime.telemetry import SpanRecord

_STEP_PREFIX = "saga "
_COMPENSATE = "saga compensate"


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to the order, at one moment."""

    time_unix_nano: int
    kind: str
    """request, step, compensation, event, consumed, receipt, email, webhook."""
    title: str
    service: str
    detail: str = ""
    error: bool = False
    trace_id: str = ""
    span_id: str = ""

    @property
    def colour(self) -> str:
        return service_colour(self.service)


@dataclass(frozen=True)
class Email:
    event_type: str
    recipient: str
    subject: str
    status: str
    attempts: int
    last_error: str


@dataclass(frozen=True)
class WebhookDelivery:
    event_type: str
    webhook_id: str
    status: str
    attempts: int
    last_http_status: int


@dataclass
class SagaView:
    order_id: str
    status: str = ""
    """The order's status from GetOrder (`CONFIRMED`), or empty when it could not be read."""
    customer: str = ""
    total: str = ""
    failure_reason: str = ""
    created: str = ""
    updated: str = ""
    error: str = ""
    """Why GetOrder failed, if it did."""
    entries: list[TimelineEntry] = field(default_factory=list)
    emails: list[Email] = field(default_factory=list)
    deliveries: list[WebhookDelivery] = field(default_factory=list)
    notifier_error: str = ""
    request_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    def offset(self, entry: TimelineEntry) -> str:
        first = self.entries[0].time_unix_nano if self.entries else entry.time_unix_nano
        return "+" + format_ms((entry.time_unix_nano - first) / 1e6)


def saga_view(order_id: str, index: SpanIndex, sources: Sources | None) -> SagaView:
    """Everything known about the order; `sources` None reads the spans only."""
    view = SagaView(order_id)
    in_traces = index.order_records(order_id)
    events: dict[str, str] = {}  # event id → event type, of the events the traces published
    for record in in_traces:
        event_id = record["attributes"].get("eventforge.event_id")
        if record["kind"] == "PRODUCER" and isinstance(event_id, str) and event_id:
            events[event_id] = str(record["attributes"].get("eventforge.event_type", ""))
    for record in in_traces:
        event_id = str(record["attributes"].get("eventforge.event_id", ""))
        entry = _entry(record, events.get(event_id, ""))
        if entry is not None:
            view.entries.append(entry)
    in_trace_ids = {(r["trace_id"], r["span_id"]) for r in in_traces}
    for record in index.event_records(events):
        if (
            record["name"] in ("email send", "webhook deliver")
            and (record["trace_id"], record["span_id"]) not in in_trace_ids
        ):
            event_id = str(record["attributes"].get("eventforge.event_id", ""))
            entry = _entry(record, events.get(event_id, ""))
            if entry is not None:
                view.entries.append(entry)
    view.entries.sort(key=lambda e: e.time_unix_nano)
    view.request_ids = sorted(
        {str(r["request_id"]) for r in in_traces if r.get("request_id")},
    )
    view.event_ids = list(events)
    if sources is not None:
        _read_order(view, sources)
        _read_notifier(view, sources, events)
    return view


def _entry(record: SpanRecord, event_type: str = "") -> TimelineEntry | None:
    name, kind = record["name"], record["kind"]
    attributes = record["attributes"]
    service = short_service(record.get("service"))
    error = record["status"]["code"] == "ERROR"
    detail = record["status"].get("description") or ""

    def entry(kind_: str, title: str, more: str = "") -> TimelineEntry:
        return TimelineEntry(
            time_unix_nano=record["start_unix_nano"],
            kind=kind_,
            title=title,
            service=service,
            detail=" · ".join(part for part in (more, detail) if part),
            error=error,
            trace_id=record["trace_id"],
            span_id=record["span_id"],
        )

    if kind == "SERVER" and "OrdersService/" in name and name.rsplit("/", 1)[-1] != "GetOrder":
        return entry("request", name.rsplit("/", 1)[-1], format_ms(record["duration_ms"]))
    if name == _COMPENSATE:
        return entry("compensation", "compensate", format_ms(record["duration_ms"]))
    if name.startswith(_STEP_PREFIX):
        return entry("step", name.removeprefix(_STEP_PREFIX), format_ms(record["duration_ms"]))
    if kind == "PRODUCER":
        return entry("event", f"published {attributes.get('eventforge.event_type', '?')}")
    if kind == "CONSUMER":
        queue = str(attributes.get("messaging.destination.name", ""))
        return entry(
            "consumed",
            f"{service} consumed {attributes.get('eventforge.event_type', '?')}",
            queue,
        )
    if name == "files issue_receipt":
        return entry("receipt", "receipt issued", str(attributes.get("eventforge.file_id", "")))
    if name == "email send":
        return entry("email", f"email for {event_type or 'an event'}")
    if name == "webhook deliver":
        status = attributes.get("http.response.status_code")
        return entry("webhook", f"webhook for {event_type or 'an event'}", f"HTTP {status or '-'}")
    return None


def _read_order(view: SagaView, sources: Sources) -> None:
    import grpc

    from eventforge.orders.v1 import orders_pb2

    try:
        order = sources.order(view.order_id)
    except grpc.RpcError as error:
        code = error.code().name if isinstance(error, grpc.Call) else "ERROR"
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        view.error = f"GetOrder: {code}: {details}"
        return
    view.status = orders_pb2.OrderStatus.Name(order.status).removeprefix("ORDER_STATUS_")
    view.customer = f"{order.customer_id} <{order.customer_email}>"
    view.total = f"{order.total.currency} {order.total.amount_minor / 100:.2f}"
    view.failure_reason = order.failure_reason
    view.created = _when(order.create_time.seconds, order.create_time.nanos)
    view.updated = _when(order.update_time.seconds, order.update_time.nanos)


def _read_notifier(view: SagaView, sources: Sources, events: dict[str, str]) -> None:
    import grpc

    from eventforge.notifier.v1 import notifier_pb2

    try:
        for event_id, event_type in events.items():
            for email in sources.notifications(event_id):
                view.emails.append(
                    Email(
                        event_type=email.event_type or event_type,
                        recipient=email.recipient,
                        subject=email.subject,
                        status=notifier_pb2.NotificationStatus.Name(email.status).removeprefix(
                            "NOTIFICATION_STATUS_"
                        ),
                        attempts=email.attempts,
                        last_error=email.last_error,
                    )
                )
            for delivery in sources.deliveries(event_id):
                attempts: Sequence[notifier_pb2.DeliveryAttempt] = delivery.attempts
                view.deliveries.append(
                    WebhookDelivery(
                        event_type=delivery.event_type or event_type,
                        webhook_id=delivery.webhook_id,
                        status=notifier_pb2.DeliveryStatus.Name(delivery.status).removeprefix(
                            "DELIVERY_STATUS_"
                        ),
                        attempts=len(attempts),
                        last_http_status=attempts[-1].http_status if attempts else 0,
                    )
                )
    except grpc.RpcError as error:
        code = error.code().name if isinstance(error, grpc.Call) else "ERROR"
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        view.notifier_error = f"{code}: {details}"


def _when(seconds: int, nanos: int) -> str:
    if not seconds and not nanos:
        return ""
    moment = datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
