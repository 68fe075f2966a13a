"""Who may call what: a per-method allow-list by the peer's certificate identity (mTLS)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc

from eventforge.runtime import errors
from eventforge.runtime.grpc.tls import peer_identity

log = logging.getLogger("eventforge.authz")

CLIENTS = "@clients"
"""Stands for the API's client services, named by the AUTHZ_CLIENTS setting."""

_ORDERS = "/eventforge.orders.v1.OrdersService/"
_FILES = "/eventforge.files.v1.FilesService/"
_NOTIFIER = "/eventforge.notifier.v1.NotifierService/"

POLICY: Mapping[str, frozenset[str]] = {
    f"{_ORDERS}CreateOrder": frozenset({CLIENTS}),
    f"{_ORDERS}GetOrder": frozenset({CLIENTS, "files"}),
    f"{_ORDERS}ListOrders": frozenset({CLIENTS}),
    f"{_ORDERS}CancelOrder": frozenset({CLIENTS}),
    f"{_ORDERS}GetReceiptUrl": frozenset({CLIENTS}),
    f"{_FILES}CreateUpload": frozenset({CLIENTS}),
    f"{_FILES}GetFile": frozenset({CLIENTS}),
    f"{_FILES}GetDownloadUrl": frozenset({CLIENTS, "orders", "notifier"}),
    f"{_NOTIFIER}RegisterWebhook": frozenset({CLIENTS}),
    f"{_NOTIFIER}ListWebhooks": frozenset({CLIENTS}),
    f"{_NOTIFIER}DeleteWebhook": frozenset({CLIENTS}),
    f"{_NOTIFIER}ListDeliveries": frozenset({CLIENTS}),
    f"{_NOTIFIER}ListNotifications": frozenset({CLIENTS}),
}
"""Every API method and the identities allowed to call it; a method not listed is refused."""

ANY_VERIFIED_PEER = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")
"""Health and reflection: any peer with a certificate from the deployment's CA."""


def allowed(method: str, identity: str | None, clients: frozenset[str]) -> bool:
    """Whether `identity` may call `method`."""
    if identity is None:
        return False
    if method.startswith(ANY_VERIFIED_PEER):
        return True
    names = POLICY.get(method, frozenset())
    return identity in names or (CLIENTS in names and identity in clients)


class Authorization:
    """PERMISSION_DENIED (and a log line) for a peer the policy does not allow."""

    def __init__(self, clients: frozenset[str]) -> None:
        self.clients = clients

    def __call__(self, method: str, context: grpc.ServicerContext) -> None:
        identity = peer_identity(context)
        if not allowed(method, identity, self.clients):
            log.warning(
                "permission denied: %s may not call %s",
                identity or "an anonymous peer",
                method,
                extra={"peer_identity": identity, "grpc_method": method, "peer": context.peer()},
            )
            raise errors.PermissionDenied(f"{identity or 'anonymous'} may not call {method}")
