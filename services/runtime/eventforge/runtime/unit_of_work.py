"""The unit of work of every service's use cases: one transaction, and the events of the
entities it saw recorded in the outbox within it (`commit`), or nothing at all (`rollback`)."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from google.protobuf.message import Message
from opentelemetry import context, trace
from sqlalchemy.orm import Session, sessionmaker

from eventforge.runtime.messaging.outbox import record_event
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
        for entity in self.seen:
            while entity.events:
                payload, subject = self.outgoing(entity, entity.events.pop(0))
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
        self._span = trace.get_tracer(__name__).start_span(
            f"{self.service} transaction",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": self.session.get_bind().dialect.name},
        )
        self._span_token = context.attach(trace.set_span_in_context(self._span))
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
            if exc is not None:
                self._span.record_exception(exc)
                self._span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
            context.detach(self._span_token)
            self._span.end()

    def record(self, payload: Message, *, subject: str) -> None:
        record_event(self.session, self.service, payload, subject=subject)

    def _commit(self) -> None:
        self.session.commit()
        self._span.set_attribute("eventforge.transaction.committed", True)

    def rollback(self) -> None:
        self.session.rollback()
