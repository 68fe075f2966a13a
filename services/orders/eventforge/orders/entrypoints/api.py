"""The orders gRPC API process: OrdersService calls → service-layer handlers."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import grpc.aio

from eventforge.files.v1 import files_pb2
from eventforge.orders.bootstrap import OrdersApp, bootstrap
from eventforge.orders.domain.commands import CancelOrder
from eventforge.orders.domain.model import OrderStatus
from eventforge.orders.entrypoints.convert import order_proto, place_order_command
from eventforge.orders.service_layer import handlers
from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc
from eventforge.runtime import errors
from eventforge.runtime.db import ping
from eventforge.runtime.grpc.server import serve
from eventforge.runtime.settings import Settings

SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name

# What a files answer means for the receipt of an order.
_RECEIPT_ERRORS: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    grpc.StatusCode.NOT_FOUND: errors.FailedPrecondition,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
}


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    """Translates OrdersService calls into service-layer handlers."""

    def __init__(self, app: OrdersApp) -> None:
        self.app = app

    async def CreateOrder(  # noqa: N802 - gRPC method name
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> orders_pb2.CreateOrderResponse:
        command = place_order_command(request)
        order = await handlers.place_order(command=command, uow=self.app.async_uow())
        return orders_pb2.CreateOrderResponse(order=order_proto(order))

    async def GetOrder(  # noqa: N802
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> orders_pb2.GetOrderResponse:
        order = await handlers.get_order(order_id=request.order_id, uow=self.app.async_uow())
        return orders_pb2.GetOrderResponse(order=order_proto(order))

    def ListOrders(  # noqa: N802
        self, request: orders_pb2.ListOrdersRequest, context: grpc.ServicerContext
    ) -> orders_pb2.ListOrdersResponse:
        orders, next_token = handlers.list_orders(
            customer_id=request.customer_id,
            page_size=request.page_size,
            page_token=request.page_token,
            uow=self.app.uow(),
        )
        return orders_pb2.ListOrdersResponse(
            orders=[order_proto(order) for order in orders], next_page_token=next_token
        )

    def CancelOrder(  # noqa: N802
        self, request: orders_pb2.CancelOrderRequest, context: grpc.ServicerContext
    ) -> orders_pb2.CancelOrderResponse:
        order = handlers.cancel_order(
            command=CancelOrder(request.order_id, request.reason),
            uow=self.app.uow(),
            gateway=self.app.gateway,
            retry=self.app.retry,
        )
        return orders_pb2.CancelOrderResponse(order=order_proto(order))

    async def GetReceiptUrl(  # noqa: N802
        self,
        request: orders_pb2.GetReceiptUrlRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> orders_pb2.GetReceiptUrlResponse:
        order = await handlers.get_order(order_id=request.order_id, uow=self.app.async_uow())
        if order.status is not OrderStatus.CONFIRMED:
            raise errors.FailedPrecondition(
                f"order {order.order_id} is {order.status.value}; only confirmed orders have "
                "receipts"
            )
        try:
            # The files client is a threaded one (deadline, retries): its call in a thread.
            reply = await asyncio.to_thread(
                self.app.files.GetDownloadUrl,
                files_pb2.GetDownloadUrlRequest(receipt_order_id=order.order_id),
            )
        except grpc.RpcError as error:
            kind = _RECEIPT_ERRORS.get(error.code(), errors.Unavailable)
            raise kind(f"receipt of order {order.order_id}: {error.details()}") from error
        return orders_pb2.GetReceiptUrlResponse(
            url=reply.url, expire_time=reply.expire_time, file_id=reply.file_id
        )


def main(settings: Settings, stop: threading.Event) -> None:
    """Serve OrdersService until told to stop."""
    app = bootstrap(settings, pre_ping=False)
    servicer = OrdersServicer(app)
    serve(
        settings,
        settings.address_of("orders"),
        lambda server: orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        probe=lambda: ping(app.engine),
        stop=stop,
        identity="orders",
    )
