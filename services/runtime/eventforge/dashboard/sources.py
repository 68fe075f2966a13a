"""Where the dashboard's live data comes from: gRPC health, SQS, the outboxes, the services.

`Sources` owns the clients (one gRPC channel per service, one SQS client, one engine per
service database), creates them on first use and closes them in `close`. Only the DLQ methods
`redrive` and `purge` change anything; everything else reads (a DLQ peek counts as a receive in
the messages' `ApproximateReceiveCount`, harmless on a DLQ, see `messaging.dlq`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventforge.runtime.settings import ALL_SERVICES, SERVICES, ServiceName, Settings

if TYPE_CHECKING:
    import grpc
    from mypy_boto3_sqs import SQSClient
    from sqlalchemy import Engine

    from eventforge.notifier.v1 import notifier_pb2
    from eventforge.orders.v1 import orders_pb2
    from eventforge.runtime.messaging.dlq import (
        DeadLetter,
        PurgeResult,
        QueueStats,
        RedriveResult,
    )
    from eventforge.topology import ResolvedQueue, ResolvedTopology

HEALTH_TIMEOUT_SECONDS = 2.0
CALL_TIMEOUT_SECONDS = 3.0
_SERVICE_NAMES = {
    "orders": "eventforge.orders.v1.OrdersService",
    "files": "eventforge.files.v1.FilesService",
    "notifier": "eventforge.notifier.v1.NotifierService",
}


@dataclass(frozen=True)
class Health:
    """One service's health as its gRPC health service (ingest: its `GET /healthz`) reports it."""

    service: ServiceName
    address: str
    status: str
    """SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, or the gRPC code of a failed check
    (UNAVAILABLE, too, for an HTTP API that does not answer)."""
    latency_ms: float | None
    detail: str = ""

    @property
    def serving(self) -> bool:
        return self.status == "SERVING"

    @property
    def url(self) -> str:
        """The API's address with its scheme: `grpc://…`, or `http://…` for ingest's."""
        return f"{'grpc' if self.service in SERVICES else 'http'}://{self.address}"


@dataclass(frozen=True)
class OutboxBacklog:
    """Unpublished rows of one service's outbox and how long the oldest has waited."""

    service: ServiceName
    unpublished: int | None
    oldest_age_seconds: float | None
    failing: int | None
    """Unpublished rows whose last publish attempt failed."""
    error: str = ""


class Sources:
    """Clients of the running stack, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._channels: dict[ServiceName, grpc.Channel] = {}
        self._engines: dict[ServiceName, Engine] = {}
        self._sqs: SQSClient | None = None
        self._names: ResolvedTopology | None = None

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            for engine in self._engines.values():
                engine.dispose()
            self._channels.clear()
            self._engines.clear()

    # --- gRPC ----------------------------------------------------------------------------------

    def channel(self, service: ServiceName) -> grpc.Channel:
        """A channel to the service (mTLS as the `operator` client when TLS is configured)."""
        from eventforge.runtime.grpc.client import channel

        with self._lock:
            found = self._channels.get(service)
            if found is None:
                found = self._channels[service] = channel(
                    self.settings,
                    self.settings.address_of(service),
                    _SERVICE_NAMES[service],
                    identity="operator",
                )
            return found

    def health(self) -> list[Health]:
        """Every service's health, checked at once."""
        with ThreadPoolExecutor(len(ALL_SERVICES)) as pool:
            return list(pool.map(self._health, ALL_SERVICES))

    def _health(self, service: ServiceName) -> Health:
        if service not in SERVICES:
            return self._http_health(service)
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        address = self.settings.address_of(service)
        started = time.monotonic()
        try:
            stub = health_pb2_grpc.HealthStub(self.channel(service))
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            name = code.name if code is not None else "ERROR"
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            return Health(service, address, name, None, details or "")
        except (ValueError, OSError) as error:  # e.g. TLS_DIR without an operator certificate
            return Health(service, address, "ERROR", None, str(error))
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return Health(service, address, status, (time.monotonic() - started) * 1000)

    def _http_health(self, service: ServiceName) -> Health:
        """An HTTP API's health: `GET /healthz` answers 200 while its database does."""
        import httpx

        address = self.settings.address_of(service)
        started = time.monotonic()
        try:
            reply = httpx.get(f"http://{address}/healthz", timeout=HEALTH_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            return Health(service, address, "UNAVAILABLE", None, str(error) or type(error).__name__)
        status = "SERVING" if reply.status_code == httpx.codes.OK else "NOT_SERVING"
        detail = "" if status == "SERVING" else f"/healthz answered {reply.status_code}"
        return Health(service, address, status, (time.monotonic() - started) * 1000, detail)

    def order(self, order_id: str) -> orders_pb2.Order:
        """OrdersService.GetOrder; grpc.RpcError when it fails."""
        from eventforge.orders.v1 import orders_pb2, orders_pb2_grpc

        stub = orders_pb2_grpc.OrdersServiceStub(self.channel("orders"))
        reply = stub.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order_id), timeout=CALL_TIMEOUT_SECONDS
        )
        return reply.order

    def notifications(self, event_id: str) -> list[notifier_pb2.Notification]:
        """The emails an event caused (NotifierService.ListNotifications)."""
        from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc

        stub = notifier_pb2_grpc.NotifierServiceStub(self.channel("notifier"))
        reply = stub.ListNotifications(
            notifier_pb2.ListNotificationsRequest(event_id=event_id, page_size=100),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return list(reply.notifications)

    def deliveries(self, event_id: str) -> list[notifier_pb2.Delivery]:
        """The webhook deliveries an event caused (NotifierService.ListDeliveries)."""
        from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc

        stub = notifier_pb2_grpc.NotifierServiceStub(self.channel("notifier"))
        reply = stub.ListDeliveries(
            notifier_pb2.ListDeliveriesRequest(event_id=event_id, page_size=100),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return list(reply.deliveries)

    # --- queues --------------------------------------------------------------------------------

    @property
    def names(self) -> ResolvedTopology:
        if self._names is None:
            from eventforge.topology import TOPOLOGY

            self._names = TOPOLOGY.resolve_for(self.settings)
        return self._names

    @property
    def sqs(self) -> SQSClient:
        with self._lock:
            if self._sqs is None:
                from eventforge.runtime import aws

                self._sqs = aws.sqs(self.settings)
            return self._sqs

    def queue(self, name: str) -> ResolvedQueue:
        """The queue called `name` (logical or physical); UnknownQueueError otherwise."""
        from eventforge.runtime.messaging.dlq import find_queue

        return find_queue(self.names, name)

    def queue_stats(self) -> list[QueueStats]:
        """Every queue and DLQ: depth, in flight, delayed, oldest age (see `dlq.queue_stats`)."""
        from eventforge.runtime.messaging import dlq

        return dlq.queue_stats(self.sqs, self.names, cloudwatch=dlq.cloudwatch(self.settings))

    def dead_letters(self, queue: ResolvedQueue, limit: int = 50) -> list[DeadLetter]:
        from eventforge.runtime.messaging import dlq

        return dlq.peek(self.sqs, queue, limit)

    def dlq_depth(self, queue: ResolvedQueue) -> int:
        from eventforge.runtime.messaging import dlq

        return dlq.depth(self.sqs, queue)

    def redrive(self, queue: ResolvedQueue, message_ids: list[str] | None) -> RedriveResult:
        """Move the DLQ's messages back to the queue: those of `message_ids`, or all."""
        from eventforge.runtime.messaging import dlq

        return dlq.redrive(self.sqs, queue, message_ids)

    def purge(self, queue: ResolvedQueue) -> PurgeResult:
        """Delete every message of the queue's DLQ."""
        from eventforge.runtime.messaging import dlq

        return dlq.purge(self.sqs, queue)

    # --- outboxes ------------------------------------------------------------------------------

    def outbox_backlogs(self) -> list[OutboxBacklog]:
        return [self._backlog(service) for service in ALL_SERVICES]

    def _engine(self, service: ServiceName) -> Engine | None:
        """The service's database engine; None while its SQLite file does not exist (reading
        must not create it)."""
        from eventforge.runtime.db import create_service_engine, database_url

        with self._lock:
            found = self._engines.get(service)
            if found is not None:
                return found
            url = database_url(self.settings, service)
            if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
                return None
            found = self._engines[service] = create_service_engine(
                self.settings, service, pool_size=1
            )
            return found

    def _backlog(self, service: ServiceName) -> OutboxBacklog:
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from eventforge.runtime.messaging.schema import outbox_table as outbox

        try:
            engine = self._engine(service)
            if engine is None:
                return OutboxBacklog(service, None, None, None, "no database yet (not migrated)")
            query = select(
                func.count(),
                func.min(outbox.c.created_at),
                func.count(outbox.c.last_error),
            ).where(outbox.c.published_at.is_(None))
            with engine.connect() as connection:
                size, oldest, failing = connection.execute(query).one()
        except SQLAlchemyError as error:
            return OutboxBacklog(service, None, None, None, _first_line(error))
        age: float | None = None
        if oldest is not None:
            if oldest.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
                oldest = oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        return OutboxBacklog(service, int(size), age if size else 0.0, int(failing))


def _first_line(error: Any) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
