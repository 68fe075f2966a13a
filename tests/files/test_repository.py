"""The files repository and units of work on PostgreSQL: round trips, locks, savepoints."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from eventforge.files.adapters.repository import SqlFiles
from eventforge.files.domain.model import (
    File,
    FileOutput,
    FileStatus,
    Findings,
    ImageInfo,
    output_location,
)
from eventforge.files.service_layer.unit_of_work import MessageUnitOfWork, SqlUnitOfWork
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.messaging.schema import outbox_table
from eventforge.runtime.migrations import migrate
from eventforge.runtime.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sessions(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    settings = Settings(database_url=database_url, data_dir=tmp_path_factory.mktemp("files-db"))
    migrate(settings, "files")
    engine = create_service_engine(settings, "files")
    yield session_factory(engine)
    engine.dispose()


def upload(expires_at: datetime = NOW + timedelta(minutes=15)) -> File:
    return File.expect_upload(
        file_id=str(uuid.uuid4()),
        file_name="cat.png",
        content_type="image/png",
        size_bytes=100,
        notify_email="ada@example.com",
        expires_at=expires_at,
        now=NOW,
    )


def receipt(order_id: str) -> File:
    return File.receipt(
        file_id=str(uuid.uuid4()),
        order_id=order_id,
        customer_email="ada@example.com",
        total_minor=5000,
        currency="USD",
        findings=Findings(900, "cd" * 32, "application/pdf", page_count=1),
        now=NOW,
    )


def test_a_processed_upload_round_trips_with_its_outputs(sessions: sessionmaker[Session]) -> None:
    file = upload()
    with SqlUnitOfWork(sessions) as uow:
        uow.files.add(file)
        uow.commit()
    thumbnail = FileOutput(
        "thumbnail", "image/png", 42, output_location(file.file_id, "thumbnail.png")
    )
    with SqlUnitOfWork(sessions) as uow:
        loaded = uow.files.get(file.file_id, for_update=True)
        assert loaded == file
        loaded.start_processing(NOW)
        findings = Findings(100, "ab" * 32, "image/png", ImageInfo(64, 32), outputs=(thumbnail,))
        loaded.processed(findings, NOW)
        uow.files.save(uow.track(loaded))
        uow.commit()
    with SqlUnitOfWork(sessions) as uow:
        again = uow.files.get(file.file_id)
    assert again == loaded
    assert again is not None
    assert again.image == ImageInfo(64, 32)
    assert again.outputs == [thumbnail]
    with sessions() as session:
        types = session.scalars(
            sa.select(outbox_table.c.event_type).where(outbox_table.c.subject == file.file_id)
        ).all()
    assert sorted(types) == ["file.processed", "file.uploaded"]


def test_the_sweep_skips_rows_another_transaction_holds(sessions: sessionmaker[Session]) -> None:
    held, free = upload(NOW - timedelta(days=30)), upload(NOW - timedelta(days=30))
    with SqlUnitOfWork(sessions) as uow:
        uow.files.add(held)
        uow.files.add(free)
        uow.commit()
    with sessions() as holder, sessions() as sweeper:
        SqlFiles(holder).get(held.file_id, for_update=True)
        found = {f.file_id for f in SqlFiles(sweeper).expired_uploads(before=NOW, limit=1000)}
        holder.rollback()
    assert free.file_id in found
    assert held.file_id not in found


def test_a_second_receipt_for_an_order_is_refused_inside_the_message_transaction(
    sessions: sessionmaker[Session],
) -> None:
    order_id = str(uuid.uuid4())
    first, second = receipt(order_id), receipt(order_id)
    with sessions() as session, session.begin():
        with MessageUnitOfWork(session) as uow:
            assert uow.files.add_receipt(uow.track(first))
            uow.commit()
        with MessageUnitOfWork(session) as uow:
            assert not uow.files.add_receipt(uow.track(second))
        # The message's transaction (with its inbox row) is still usable and commits.
        session.execute(sa.select(1))
    with SqlUnitOfWork(sessions) as uow:
        stored = uow.files.receipt_for(order_id)
    assert stored is not None
    assert stored.file_id == first.file_id
    assert stored.status is FileStatus.PROCESSED


def test_a_message_unit_left_without_commit_undoes_only_its_own_work(
    sessions: sessionmaker[Session],
) -> None:
    kept, dropped = upload(), upload()
    with sessions() as session, session.begin():
        SqlFiles(session).add(kept)  # stands for the runtime's inbox row
        with MessageUnitOfWork(session) as uow:
            uow.files.add(dropped)
    with SqlUnitOfWork(sessions) as uow:
        assert uow.files.get(kept.file_id) is not None
        assert uow.files.get(dropped.file_id) is None
