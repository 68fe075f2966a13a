"""Which events cause which emails: recipient, template, subject and what the template shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf.message import Message

from eventforge.common.v1.money_pb2 import LineItem, Money
from eventforge.events.v1 import events_pb2

# Currencies whose minor unit is not a hundredth (ISO 4217 exponents).
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3}
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " "})


@dataclass(frozen=True)
class EmailIntent:
    """An email to write: `template` names `templates/<template>.txt.j2` and `.html.j2`."""

    recipient: str
    template: str
    subject: str
    context: Mapping[str, object] = field(default_factory=dict)


def money(value: Money) -> str:
    """`Money(amount_minor=5000, currency="USD")` → `"50.00 USD"`."""
    exponent = _EXPONENTS.get(value.currency, 2)
    sign = "-" if value.amount_minor < 0 else ""
    units, minor = divmod(abs(value.amount_minor), 10**exponent)
    amount = f"{units}.{minor:0{exponent}d}" if exponent else str(units)
    return f"{sign}{amount} {value.currency}"


def receipt_file_id(payload: Message) -> str:
    """The file whose download link the event's email needs ("" when none)."""
    if isinstance(payload, events_pb2.ReceiptReady) and payload.customer_email:
        return payload.file_id
    return ""


def emails_for(payload: Message, *, download_url: str = "") -> list[EmailIntent]:
    """The emails an event causes (none for events that only go to webhooks)."""
    match payload:
        case events_pb2.OrderConfirmed(customer_email=str(to)) if to:
            return [
                _intent(
                    to,
                    "order_confirmed",
                    f"Your order {payload.order_id} is confirmed",
                    order_id=payload.order_id,
                    total=money(payload.total),
                    items=[_line(item) for item in payload.items],
                )
            ]
        case events_pb2.OrderFailed(customer_email=str(to)) if to:
            return [
                _intent(
                    to,
                    "order_failed",
                    f"We could not complete your order {payload.order_id}",
                    order_id=payload.order_id,
                    reason=payload.reason,
                )
            ]
        case events_pb2.OrderCancelled(customer_email=str(to)) if to:
            return [
                _intent(
                    to,
                    "order_cancelled",
                    f"Your order {payload.order_id} is cancelled",
                    order_id=payload.order_id,
                    reason=payload.reason,
                )
            ]
        case events_pb2.ReceiptReady(customer_email=str(to)) if to:
            return [
                _intent(
                    to,
                    "receipt_ready",
                    f"Your receipt for order {payload.order_id}",
                    order_id=payload.order_id,
                    total=money(payload.total),
                    download_url=download_url,
                )
            ]
        case events_pb2.FileRejected(notify_email=str(to)) if to:
            return [
                _intent(
                    to,
                    "file_rejected",
                    f"Your upload {payload.file_name or payload.file_id} was rejected",
                    file_id=payload.file_id,
                    file_name=payload.file_name,
                    reason=payload.reason,
                )
            ]
    # order.compensation_failed is for operators (it is alarmed), file.processed for webhooks.
    return []


def _intent(recipient: str, template: str, subject: str, **context: object) -> EmailIntent:
    return EmailIntent(
        recipient=recipient.strip().lower(),
        template=template,
        subject=subject.translate(_LINE_BREAKS)[:300],
        context=context,
    )


def _line(item: LineItem) -> dict[str, object]:
    return {"sku": item.sku, "quantity": item.quantity, "line_total": money(item.line_total)}
