"""Translate between orders protos and the domain."""

from __future__ import annotations

from eventforge.events.v1 import events_pb2
from eventforge.orders.domain.commands import (
    ConfirmPayment,
    PlaceOrder,
    RefusePayment,
    RequestedLine,
)
from eventforge.orders.domain.model import Order
from eventforge.orders.service_layer.events import line_items, money
from eventforge.orders.v1 import orders_pb2


def place_order_command(request: orders_pb2.CreateOrderRequest) -> PlaceOrder:
    return PlaceOrder(
        idempotency_key=request.idempotency_key,
        customer_id=request.customer_id,
        customer_email=request.customer_email,
        currency=request.currency,
        payment_token=request.payment_token,
        lines=tuple(
            RequestedLine(
                sku=item.sku,
                quantity=item.quantity,
                unit_price_minor=item.unit_price.amount_minor,
                currency=item.unit_price.currency,
            )
            for item in request.items
        ),
    )


def order_proto(order: Order) -> orders_pb2.Order:
    message = orders_pb2.Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        customer_email=order.customer_email,
        status=orders_pb2.OrderStatus.Value(f"ORDER_STATUS_{order.status.value}"),
        items=line_items(order),
        total=money(order.total_minor, order.currency),
        failure_reason=order.failure_reason,
        payment_id=order.payment_id,
    )
    message.create_time.FromDatetime(order.created_at)
    message.update_time.FromDatetime(order.updated_at)
    return message


def confirm_payment_command(event: events_pb2.PaymentSucceeded) -> ConfirmPayment:
    return ConfirmPayment(
        payment_id=event.payment_id,
        provider=event.provider,
        amount_minor=event.amount.amount_minor,
        currency=event.amount.currency,
    )


def refuse_payment_command(event: events_pb2.PaymentFailed) -> RefusePayment:
    return RefusePayment(payment_id=event.payment_id, provider=event.provider, reason=event.reason)
