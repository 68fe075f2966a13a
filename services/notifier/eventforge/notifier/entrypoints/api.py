"""The notifier gRPC API process: NotifierService calls → service-layer handlers."""

from __future__ import annotations

import threading

import grpc

from eventforge.notifier.bootstrap import NotifierApp, bootstrap
from eventforge.notifier.entrypoints.convert import (
    delivery_proto,
    notification_proto,
    webhook_proto,
)
from eventforge.notifier.service_layer import webhooks
from eventforge.notifier.service_layer.notifications import list_notifications
from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.runtime.db import ping
from eventforge.runtime.grpc.server import serve
from eventforge.runtime.settings import Settings

SERVICE_NAME = notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name


class NotifierServicer(notifier_pb2_grpc.NotifierServiceServicer):
    """Translates NotifierService calls into service-layer handlers."""

    def __init__(self, app: NotifierApp) -> None:
        self.app = app

    def RegisterWebhook(  # noqa: N802 - gRPC method name
        self, request: notifier_pb2.RegisterWebhookRequest, context: grpc.ServicerContext
    ) -> notifier_pb2.RegisterWebhookResponse:
        webhook = webhooks.register_webhook(
            command=webhooks.RegisterWebhook(
                url=request.url,
                event_types=tuple(request.event_types),
                description=request.description,
            ),
            uow=self.app.uow(),
            resolver=self.app.resolver,
            allowed_hosts=self.app.allowed_hosts,
        )
        return notifier_pb2.RegisterWebhookResponse(
            webhook=webhook_proto(webhook), signing_secret=webhook.secret
        )

    def ListWebhooks(  # noqa: N802
        self, request: notifier_pb2.ListWebhooksRequest, context: grpc.ServicerContext
    ) -> notifier_pb2.ListWebhooksResponse:
        found, next_token = webhooks.list_webhooks(
            page_size=request.page_size, page_token=request.page_token, uow=self.app.uow()
        )
        return notifier_pb2.ListWebhooksResponse(
            webhooks=[webhook_proto(w) for w in found], next_page_token=next_token
        )

    def DeleteWebhook(  # noqa: N802
        self, request: notifier_pb2.DeleteWebhookRequest, context: grpc.ServicerContext
    ) -> notifier_pb2.DeleteWebhookResponse:
        webhooks.delete_webhook(webhook_id=request.webhook_id, uow=self.app.uow())
        return notifier_pb2.DeleteWebhookResponse()

    def ListDeliveries(  # noqa: N802
        self, request: notifier_pb2.ListDeliveriesRequest, context: grpc.ServicerContext
    ) -> notifier_pb2.ListDeliveriesResponse:
        found, next_token = webhooks.list_deliveries(
            webhook_id=request.webhook_id,
            event_id=request.event_id,
            page_size=request.page_size,
            page_token=request.page_token,
            uow=self.app.uow(),
        )
        return notifier_pb2.ListDeliveriesResponse(
            deliveries=[delivery_proto(d) for d in found], next_page_token=next_token
        )

    def ListNotifications(  # noqa: N802
        self, request: notifier_pb2.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> notifier_pb2.ListNotificationsResponse:
        found, next_token = list_notifications(
            event_id=request.event_id,
            recipient=request.recipient,
            page_size=request.page_size,
            page_token=request.page_token,
            uow=self.app.uow(),
        )
        return notifier_pb2.ListNotificationsResponse(
            notifications=[notification_proto(n) for n in found], next_page_token=next_token
        )


def main(settings: Settings, stop: threading.Event) -> None:
    """Serve NotifierService until told to stop."""
    app = bootstrap(settings, pre_ping=False)
    servicer = NotifierServicer(app)
    serve(
        settings,
        settings.address_of("notifier"),
        lambda server: notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        probe=lambda: ping(app.engine),
        stop=stop,
        identity="notifier",
    )
