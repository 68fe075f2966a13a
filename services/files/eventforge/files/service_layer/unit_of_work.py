"""Units of work: one transaction per use case; file events go to the outbox with it."""

from __future__ import annotations

from typing import Any, Self

from google.protobuf.message import Message
from sqlalchemy.orm import Session, SessionTransaction

from eventforge.files.adapters.repository import SqlFiles
from eventforge.files.domain.model import File
from eventforge.files.service_layer.events import to_payload
from eventforge.files.service_layer.ports import FileRepository
from eventforge.runtime.messaging.outbox import record_event
from eventforge.runtime.unit_of_work import EventUnitOfWork, SqlEventUnitOfWork


class UnitOfWork(EventUnitOfWork[File]):
    """Rolls back unless committed; `commit` also records the events of the files it saw."""

    files: FileRepository

    def outgoing(self, entity: File, event: Any) -> tuple[Message, str]:
        return to_payload(event, entity), entity.file_id


class SqlUnitOfWork(SqlEventUnitOfWork, UnitOfWork):
    """A unit of work over its own SQLAlchemy session of the files schema."""

    service = "files"

    def bind(self, session: Session) -> None:
        self.files = SqlFiles(session)


class MessageUnitOfWork(UnitOfWork):
    """A unit of work inside a queue handler's transaction, which the consumer runtime owns.

    It works in a savepoint: `commit` releases it, leaving the real commit to the runtime (with
    the inbox row); leaving without commit rolls back only this unit's work.
    """

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.files = SqlFiles(session)
        self._savepoint: SessionTransaction | None = None

    def __enter__(self) -> Self:
        self._savepoint = self.session.begin_nested()
        return super().__enter__()

    def record(self, payload: Message, *, subject: str) -> None:
        record_event(self.session, SqlUnitOfWork.service, payload, subject=subject)

    def _commit(self) -> None:
        if self._savepoint is not None:
            self._savepoint.commit()
            self._savepoint = None

    def rollback(self) -> None:
        if self._savepoint is not None and self._savepoint.is_active:
            self._savepoint.rollback()
        self._savepoint = None
