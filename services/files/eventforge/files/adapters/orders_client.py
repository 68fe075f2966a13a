"""The orders service as the receipts use case sees it: GetOrder over gRPC."""

from __future__ import annotations

from datetime import UTC

import grpc

from eventforge.files.service_layer.ports import (
    OrdersClient,
    OrderSnapshot,
    OrdersUnavailable,
    ReceiptLine,
)
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc

_STATUS_PREFIX = "ORDER_STATUS_"


class GrpcOrdersClient(OrdersClient):
    """Calls go through the runtime's channel: deadline, trace context, retries on UNAVAILABLE."""

    def __init__(self, stub: orders_pb2_grpc.OrdersServiceStub) -> None:
        self.stub = stub

    def get_order(self, order_id: str) -> OrderSnapshot:
        try:
            reply = self.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id))
        except grpc.RpcError as error:
            raise OrdersUnavailable(
                f"GetOrder({order_id}) failed: {error.code().name} {error.details()}"
            ) from error
        order = reply.order
        return OrderSnapshot(
            order_id=order.order_id,
            customer_id=order.customer_id,
            customer_email=order.customer_email,
            status=orders_pb2.OrderStatus.Name(order.status).removeprefix(_STATUS_PREFIX),
            currency=order.total.currency,
            lines=tuple(
                ReceiptLine(
                    sku=item.sku,
                    quantity=item.quantity,
                    unit_price_minor=item.unit_price.amount_minor,
                    line_total_minor=item.line_total.amount_minor,
                )
                for item in order.items
            ),
            total_minor=order.total.amount_minor,
            confirmed_at=order.update_time.ToDatetime(tzinfo=UTC),
        )
