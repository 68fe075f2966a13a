"""Domain events → the published events of `eventforge.events.v1`, and orders → protos."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message

from eventforge.common.v1.money_pb2 import LineItem, Money
from eventforge.events.v1 import events_pb2
from eventforge.orders.domain import model


def money(amount_minor: int, currency: str) -> Money:
    return Money(amount_minor=amount_minor, currency=currency)


def line_items(order: model.Order) -> list[LineItem]:
    return [
        LineItem(
            sku=line.sku,
            quantity=line.quantity,
            unit_price=money(line.unit_price_minor, order.currency),
            line_total=money(line.total_minor, order.currency),
        )
        for line in order.lines
    ]


def to_payload(event: model.Event, order: model.Order) -> Message:
    """The published form of a domain event of `order`."""
    order_id, customer_id, email = order.order_id, order.customer_id, order.customer_email
    match event:
        case model.OrderPlaced():
            return events_pb2.OrderPlaced(
                order_id=order_id,
                customer_id=customer_id,
                customer_email=email,
                items=line_items(order),
                total=money(order.total_minor, order.currency),
            )
        case model.OrderConfirmed():
            confirmed = events_pb2.OrderConfirmed(
                order_id=order_id,
                customer_id=customer_id,
                customer_email=email,
                items=line_items(order),
                total=money(order.total_minor, order.currency),
                payment_id=order.payment_id,
            )
            confirmed.confirm_time.FromDatetime(datetime.now(UTC))
            return confirmed
        case model.OrderFailed(step=step, reason=reason):
            return events_pb2.OrderFailed(
                order_id=order_id,
                customer_id=customer_id,
                customer_email=email,
                failed_step=step,
                reason=reason,
            )
        case model.OrderCancelled(reason=reason):
            return events_pb2.OrderCancelled(
                order_id=order_id, customer_id=customer_id, customer_email=email, reason=reason
            )
        case model.CompensationFailed(compensation=compensation, reason=reason):
            return events_pb2.OrderCompensationFailed(
                order_id=order.order_id, compensation=compensation, reason=reason
            )
