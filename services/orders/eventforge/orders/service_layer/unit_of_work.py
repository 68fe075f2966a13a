"""Units of work: one transaction per use case; aggregate events go to the outbox with it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from google.protobuf.message import Message
from sqlalchemy.orm import Session, sessionmaker

from eventforge.orders.adapters.repository import SqlCatalog, SqlIdempotencyKeys, SqlOrders
from eventforge.orders.domain.model import Order
from eventforge.orders.service_layer.events import to_payload
from eventforge.orders.service_layer.ports import Catalog, IdempotencyKeys, OrderRepository
from eventforge.runtime.messaging.outbox import record_event
from eventforge.runtime.unit_of_work import EventUnitOfWork


class UnitOfWork(EventUnitOfWork[Order]):
    """Rolls back unless committed; `commit` also records the events of the orders it saw."""

    orders: OrderRepository
    catalog: Catalog
    idempotency: IdempotencyKeys

    def outgoing(self, entity: Order, event: Any) -> tuple[Message, str]:
        return to_payload(event, entity), entity.order_id


class SqlUnitOfWork(UnitOfWork):
    """A unit of work over one SQLAlchemy session of the orders schema."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        super().__init__()
        self.session_factory = session_factory

    def __enter__(self) -> Self:
        self.session = self.session_factory()
        self.orders = SqlOrders(self.session)
        self.catalog = SqlCatalog(self.session)
        self.idempotency = SqlIdempotencyKeys(self.session)
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        self.session.close()

    def record(self, payload: Message, *, subject: str) -> None:
        record_event(self.session, "orders", payload, subject=subject)

    def _commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
