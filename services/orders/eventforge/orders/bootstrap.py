"""Wire the orders service: engine, units of work, payment gateway and the files client."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from eventforge.files.v1 import files_pb2_grpc
from eventforge.orders.adapters.payments import LocalPaymentGateway
from eventforge.orders.adapters.repository import CataloguePrices
from eventforge.orders.service_layer.ports import PaymentGateway
from eventforge.orders.service_layer.saga import RetryPolicy
from eventforge.orders.service_layer.unit_of_work import AsyncSqlUnitOfWork, SqlUnitOfWork
from eventforge.runtime.db import (
    create_async_service_engine,
    create_service_engine,
    relay_waker,
    session_factory,
)
from eventforge.runtime.grpc.client import channel
from eventforge.runtime.messaging.wakeup import RelayWaker
from eventforge.runtime.settings import Settings

FILES_SERVICE = "eventforge.files.v1.FilesService"


@dataclass
class OrdersApp:
    """Everything the orders entrypoints need, created once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    gateway: PaymentGateway
    waker: RelayWaker | None = None
    """Wakes the relays after commits that recorded events (None on SQLite: they poll)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.sessions)

    @cached_property
    def async_engine(self) -> AsyncEngine:
        """The asyncio engine of the API's hot paths (created on first use, by the API)."""
        return create_async_service_engine(self.settings, "orders")

    @cached_property
    def prices(self) -> CataloguePrices:
        """The catalogue products this process read, kept CATALOGUE_CACHE_SECONDS."""
        return CataloguePrices(self.settings.catalogue_cache_seconds)

    def async_uow(self) -> AsyncSqlUnitOfWork:
        wake = None if self.waker is None else self.waker.wake
        return AsyncSqlUnitOfWork(self.async_engine, wake, self.prices)

    @cached_property
    def files(self) -> files_pb2_grpc.FilesServiceStub:
        """Client of the files service (created on first use)."""
        target = self.settings.address_of("files")
        return files_pb2_grpc.FilesServiceStub(
            channel(
                self.settings,
                target,
                FILES_SERVICE,
                ["GetDownloadUrl", "GetFile"],
                identity="orders",
            )
        )


def bootstrap(
    settings: Settings, *, gateway: PaymentGateway | None = None, pre_ping: bool = True
) -> OrdersApp:
    """The orders application on real adapters (or the given payment gateway).

    `pre_ping`: see `create_service_engine`.
    """
    engine = create_service_engine(settings, "orders", pre_ping=pre_ping)
    waker = relay_waker(engine)
    return OrdersApp(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine, waker),
        gateway=gateway or LocalPaymentGateway(engine),
        waker=waker,
        retry=RetryPolicy(
            pending_timeout=timedelta(seconds=settings.payment_pending_timeout_seconds)
        ),
    )
