"""The unit of work of every service's use cases: one transaction, and the events of the
entities it saw recorded in the outbox within it (`commit`), or nothing at all (`rollback`)."""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from google.protobuf.message import Message
from opentelemetry import context, trace
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from eventforge.runtime.messaging.outbox import (
    INSERT_OUTBOX,
    notify_channel,
    outbox_row,
    record_event,
)
from eventforge.runtime.settings import ServiceName


class HasEvents(Protocol):
    """An entity that collects the domain events of its changes until they are recorded."""

    events: list[Any]


Entity = TypeVar("Entity", bound=HasEvents)


class EventUnitOfWork(abc.ABC, Generic[Entity]):
    """Rolls back unless committed; `commit` also records the events of the entities it saw."""

    def __init__(self) -> None:
        self.seen: list[Entity] = []

    def __enter__(self) -> Self:
        self.seen = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    def track(self, entity: Entity) -> Entity:
        """Remember an entity so its new events are recorded when the unit commits."""
        self.seen.append(entity)
        return entity

    def commit(self) -> None:
        for payload, subject in new_events(self.seen, self.outgoing):
            self.record(payload, subject=subject)
        self._commit()

    @abc.abstractmethod
    def outgoing(self, entity: Entity, event: Any) -> tuple[Message, str]:
        """The event's message for the outbox, and its subject (the entity's id)."""

    @abc.abstractmethod
    def record(self, payload: Message, *, subject: str) -> None:
        """Add an event to the outbox of this unit of work."""

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...


Outgoing = Callable[[Entity, Any], tuple[Message, str]]


def new_events(entities: list[Entity], outgoing: Outgoing[Entity]) -> Iterator[tuple[Message, str]]:
    """Each entity's new events as (message, subject), oldest first; taken from the entity."""
    for entity in entities:
        while entity.events:
            yield outgoing(entity, entity.events.pop(0))


@functools.cache
def _tracer() -> trace.Tracer:
    # Once per process: looking the tracer up cost a few percent of a small call's CPU. Before
    # telemetry is configured it is a proxy, which follows the provider once there is one.
    return trace.get_tracer(__name__)


def transaction_span(service: ServiceName, dialect: str) -> tuple[trace.Span, object]:
    """Start the one span of a unit of work, `<service> transaction`, and make it current."""
    span = _tracer().start_span(
        f"{service} transaction", kind=trace.SpanKind.CLIENT, attributes={"db.system": dialect}
    )
    return span, context.attach(trace.set_span_in_context(span))


def end_transaction_span(span: trace.Span, token: object, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.StatusCode.ERROR, type(error).__name__)
    context.detach(token)  # type: ignore[arg-type]
    span.end()


class SqlEventUnitOfWork(EventUnitOfWork[Any]):
    """A unit of work on a SQLAlchemy session of a service's schema, with the service's outbox.

    Subclasses name their `service` and create their repositories in `bind`; this class opens
    its own session on enter (`session_factory`), commits or rolls it back, and closes it on
    exit. Mix it in before the service's own unit of work: `class SqlUnitOfWork(
    SqlEventUnitOfWork, UnitOfWork)`.

    The transaction is one CLIENT span, `<service> transaction` (per-statement spans are
    opt-in: TRACE_SQL), recording whether it committed and any error.
    """

    service: ClassVar[ServiceName]
    session: Session

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        super().__init__()
        self.session_factory = session_factory

    @abc.abstractmethod
    def bind(self, session: Session) -> None:
        """Create the unit's repositories on `session`."""

    def __enter__(self) -> Self:
        self.session = self.session_factory()
        self._span, self._span_token = transaction_span(
            self.service, self.session.get_bind().dialect.name
        )
        self.bind(self.session)
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
            self.session.close()
        finally:
            end_transaction_span(self._span, self._span_token, exc)

    def record(self, payload: Message, *, subject: str) -> None:
        record_event(self.session, self.service, payload, subject=subject)

    def _commit(self) -> None:
        self.session.commit()
        self._span.set_attribute("eventforge.transaction.committed", True)

    def rollback(self) -> None:
        self.session.rollback()


class AsyncUnitOfWork(abc.ABC, Generic[Entity]):
    """What an asyncio use case sees of its unit of work: `async with uow:` one transaction,
    rolled back unless `commit` (which records the new events of the entities it tracked)."""

    @abc.abstractmethod
    async def __aenter__(self) -> Self: ...

    @abc.abstractmethod
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @abc.abstractmethod
    def track(self, entity: Entity) -> Entity:
        """Remember an entity so its new events are recorded when the unit commits."""

    @abc.abstractmethod
    async def commit(self) -> None: ...


class AsyncSqlEventUnitOfWork(AsyncUnitOfWork[Entity]):
    """The asyncio unit of work: one transaction on a connection of an `AsyncEngine`, the new
    events of the entities it tracked recorded in the service's outbox on `commit`, or nothing
    at all. Subclasses name their `service`, give each event's message (`outgoing`) and
    create their repositories in `bind`. One span, `<service> transaction`, as the threaded
    unit's. After a commit that recorded events, `wake` is told the relays' channel.
    """

    service: ClassVar[ServiceName]
    connection: AsyncConnection

    def __init__(self, engine: AsyncEngine, wake: Callable[[set[str]], None] | None = None) -> None:
        self.engine = engine
        self.wake = wake
        self.seen: list[Entity] = []

    @abc.abstractmethod
    async def bind(self, connection: AsyncConnection) -> None:
        """Create the unit's repositories on `connection` (its transaction has begun)."""

    @abc.abstractmethod
    def outgoing(self, entity: Entity, event: Any) -> tuple[Message, str]:
        """The event's message for the outbox, and its subject (the entity's id)."""

    def track(self, entity: Entity) -> Entity:
        self.seen.append(entity)
        return entity

    async def __aenter__(self) -> Self:
        self.seen = []
        self._span, self._span_token = transaction_span(self.service, self.engine.dialect.name)
        connection: AsyncConnection | None = None
        try:
            connection = self.connection = await self.engine.connect()
            # Begun explicitly: repositories may work on the driver's connection beneath it.
            await connection.begin()
            await self.bind(connection)
        except BaseException as error:
            if connection is not None:
                await connection.close()
            end_transaction_span(self._span, self._span_token, error)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.connection.rollback()  # nothing left to roll back after a commit
            await self.connection.close()
        finally:
            end_transaction_span(self._span, self._span_token, exc)

    async def commit(self) -> None:
        recorded = False
        for payload, subject in new_events(self.seen, self.outgoing):
            _, row = outbox_row(self.service, payload, subject=subject)
            await self.connection.execute(INSERT_OUTBOX, row)
            recorded = True
        await self.connection.commit()
        self._span.set_attribute("eventforge.transaction.committed", True)
        if recorded and self.wake is not None:
            self.wake({notify_channel(self.service)})
