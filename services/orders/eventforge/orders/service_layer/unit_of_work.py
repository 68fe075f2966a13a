"""Units of work: one transaction per use case; aggregate events go to the outbox with it."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from eventforge.orders.adapters.repository import SqlCatalog, SqlIdempotencyKeys, SqlOrders
from eventforge.orders.domain.model import Order
from eventforge.orders.service_layer.events import to_payload
from eventforge.orders.service_layer.ports import Catalog, IdempotencyKeys, OrderRepository
from eventforge.runtime.unit_of_work import EventUnitOfWork, SqlEventUnitOfWork


class UnitOfWork(EventUnitOfWork[Order]):
    """Rolls back unless committed; `commit` also records the events of the orders it saw."""

    orders: OrderRepository
    catalog: Catalog
    idempotency: IdempotencyKeys

    def outgoing(self, entity: Order, event: Any) -> tuple[Message, str]:
        return to_payload(event, entity), entity.order_id


class SqlUnitOfWork(SqlEventUnitOfWork, UnitOfWork):
    """A unit of work over its own SQLAlchemy session of the orders schema."""

    service = "orders"

    def bind(self, session: Session) -> None:
        self.orders = SqlOrders(session)
        self.catalog = SqlCatalog(session)
        self.idempotency = SqlIdempotencyKeys(session)
