"""Units of work: one transaction per use case; aggregate events go to the outbox with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session

from eventforge.orders.adapters.repository import (
    AsyncSqlCatalog,
    AsyncSqlIdempotencyKeys,
    AsyncSqlOrders,
    CachedCatalog,
    CataloguePrices,
    PgCatalog,
    PgIdempotencyKeys,
    PgOrders,
    SqlCatalog,
    SqlIdempotencyKeys,
    SqlOrders,
)
from eventforge.orders.domain.model import Order
from eventforge.orders.service_layer.events import to_payload
from eventforge.orders.service_layer.ports import (
    AsyncCatalog,
    AsyncIdempotencyKeys,
    AsyncOrders,
    Catalog,
    IdempotencyKeys,
    OrderRepository,
)
from eventforge.runtime.unit_of_work import (
    AsyncSqlEventUnitOfWork,
    EventUnitOfWork,
    SqlEventUnitOfWork,
)
from eventforge.runtime.unit_of_work import (
    AsyncUnitOfWork as BaseAsyncUnitOfWork,
)


def outgoing(order: Order, event: Any) -> tuple[Message, str]:
    """An order's event as the outbox records it, about the order."""
    return to_payload(event, order), order.order_id


class UnitOfWork(EventUnitOfWork[Order]):
    """Rolls back unless committed; `commit` also records the events of the orders it saw."""

    orders: OrderRepository
    catalog: Catalog
    idempotency: IdempotencyKeys

    def outgoing(self, entity: Order, event: Any) -> tuple[Message, str]:
        return outgoing(entity, event)


class SqlUnitOfWork(SqlEventUnitOfWork, UnitOfWork):
    """A unit of work over its own SQLAlchemy session of the orders schema."""

    service = "orders"

    def bind(self, session: Session) -> None:
        self.orders = SqlOrders(session)
        self.catalog = SqlCatalog(session)
        self.idempotency = SqlIdempotencyKeys(session)


class AsyncUnitOfWork(BaseAsyncUnitOfWork[Order]):
    """The unit of work of the API's hot paths (place and read an order), on asyncio."""

    orders: AsyncOrders
    catalog: AsyncCatalog
    idempotency: AsyncIdempotencyKeys


class AsyncSqlUnitOfWork(AsyncSqlEventUnitOfWork[Order], AsyncUnitOfWork):
    """A unit of work over its own asyncio connection to the orders schema."""

    service = "orders"

    def __init__(
        self,
        engine: AsyncEngine,
        wake: Callable[[set[str]], None] | None = None,
        prices: CataloguePrices | None = None,
    ) -> None:
        super().__init__(engine, wake)
        self.prices = prices

    async def bind(self, connection: AsyncConnection) -> None:
        catalog: AsyncCatalog
        if connection.dialect.name == "postgresql":
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None, "a connection checked out of the pool"
            self.orders = PgOrders(driver)
            catalog = PgCatalog(driver)
            self.idempotency = PgIdempotencyKeys(driver)
        else:
            self.orders = AsyncSqlOrders(connection)
            catalog = AsyncSqlCatalog(connection)
            self.idempotency = AsyncSqlIdempotencyKeys(connection)
        if self.prices is not None and self.prices.seconds > 0:
            catalog = CachedCatalog(catalog, self.prices)
        self.catalog = catalog

    def outgoing(self, entity: Order, event: Any) -> tuple[Message, str]:
        return outgoing(entity, event)
