"""The SQL repositories and units of work, on SQLite (as `make up` runs) and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from eventforge.notifier.adapters.templates import JinjaEmailRenderer
from eventforge.notifier.domain.model import DeliveryStatus, NotificationStatus, WebhookStatus
from eventforge.notifier.service_layer import webhooks
from eventforge.notifier.service_layer.deliveries import attempt_delivery, claim_deliveries
from eventforge.notifier.service_layer.fan_out import fan_out
from eventforge.notifier.service_layer.notifications import (
    EmailPolicy,
    claim_emails,
    list_notifications,
    send_email,
)
from eventforge.notifier.service_layer.ports import DueDelivery
from eventforge.notifier.service_layer.unit_of_work import SessionUnitOfWork, SqlUnitOfWork
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.migrations import migrate
from eventforge.runtime.settings import Settings
from tests.notifier.fakes import FakeFiles, FakeMailer, FakeResolver, FakeTransport
from tests.notifier.test_handlers import PUBLIC, confirmed, policy

LEASE = timedelta(seconds=30)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        settings = Settings(database_url=request.getfixturevalue("database_url"), data_dir=tmp_path)
    migrate(settings, "notifier")
    engine = create_service_engine(settings, "notifier")
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def uow(sessions: sessionmaker[Session]) -> Iterator[SqlUnitOfWork]:
    made = SqlUnitOfWork(sessions)
    yield made
    # The PostgreSQL database is shared with the process tests: retire what this test made.
    with sessions() as session:
        for (webhook_id,) in session.execute(
            sa.text("SELECT webhook_id FROM webhooks WHERE description = 'repository test'")
        ):
            webhooks.delete_webhook(webhook_id=webhook_id, uow=SqlUnitOfWork(sessions))


def register(uow: SqlUnitOfWork, url: str = "https://hooks.example.com/in") -> str:
    webhook = webhooks.register_webhook(
        command=webhooks.RegisterWebhook(url, ("order.confirmed",), "repository test"),
        uow=uow,
        resolver=FakeResolver(PUBLIC),
        allowed_hosts=frozenset(),
    )
    return webhook.webhook_id


def consume(sessions: sessionmaker[Session], envelope: object) -> None:
    """Fan out in a transaction of our own, as the consumer does with its inbox row."""
    with sessions() as session, session.begin():
        fan_out(
            envelope=envelope,  # type: ignore[arg-type]
            uow=SessionUnitOfWork(session),
            files=FakeFiles(),
            renderer=JinjaEmailRenderer(),
        )


def claim_all(uow: SqlUnitOfWork) -> list[DueDelivery]:
    return claim_deliveries(uow=uow, limit=100, busy={}, per_endpoint=100, lease=LEASE)


def test_the_whole_cycle_persists(sessions: sessionmaker[Session], uow: SqlUnitOfWork) -> None:
    webhook_id = register(uow)
    failing_id = register(uow, "https://other.example.com/in")
    envelope = confirmed()
    consume(sessions, envelope)
    consume(sessions, envelope)
    # The PostgreSQL database is shared with other tests: only these endpoints are ours.
    ours = {webhook_id, failing_id}
    listed, _ = webhooks.list_deliveries(
        webhook_id="", event_id=envelope.event_id, page_size=100, page_token="", uow=uow
    )
    found = [d for d in listed if d.webhook_id in ours]
    assert sorted(d.webhook_id for d in found) == sorted(ours)
    due = [d for d in claim_all(uow) if d.webhook_id in ours]
    assert {d.delivery_id for d in due} == {d.delivery_id for d in found}
    assert [d for d in claim_all(uow) if d.webhook_id in ours] == []
    transport = FakeTransport(statuses={"other.example.com": 500})
    for claim in due:
        attempt_delivery(
            claim,
            uow=uow,
            transport=transport,
            resolver=FakeResolver(PUBLIC),
            policy=policy(failing_after=1),
        )
    found, _ = webhooks.list_deliveries(
        webhook_id=failing_id, event_id="", page_size=10, page_token="", uow=uow
    )
    [failed] = found
    assert failed.status is DeliveryStatus.RETRYING
    assert failed.next_attempt_at is not None
    assert [(a.number, a.http_status, a.error) for a in failed.attempts] == [(1, 500, "HTTP 500")]
    with uow:
        stored = uow.webhooks.get(failing_id)
    assert stored is not None
    assert stored.status is WebhookStatus.FAILING

    mailer = EmailPolicy()
    claimed = claim_emails(uow=uow, limit=100, policy=mailer)
    [email] = [n for n in claimed if n.event_id == envelope.event_id]
    assert send_email(email, uow=uow, mailer=FakeMailer(), policy=mailer) is NotificationStatus.SENT
    emails, _ = list_notifications(
        event_id=envelope.event_id, recipient="ADA@example.com", page_size=5, page_token="", uow=uow
    )
    assert [(n.status, n.provider_message_id, n.attempts) for n in emails] == [
        (NotificationStatus.SENT, "msg-1", 1)
    ]
    assert "50.00 USD" in emails[0].html_body

    with sessions() as session:
        published = session.execute(
            sa.text("SELECT event_type, subject FROM outbox ORDER BY id")
        ).all()
    assert ("notification.failed", failing_id) in published
    assert ("notification.sent", email.notification_id) in published

    assert webhooks.delete_webhook(webhook_id=failing_id, uow=uow) == 1
    found, _ = webhooks.list_deliveries(
        webhook_id=failing_id, event_id="", page_size=10, page_token="", uow=uow
    )
    assert found == []


def test_pages_are_stable(uow: SqlUnitOfWork) -> None:
    made = [register(uow) for _ in range(3)]
    seen: list[str] = []
    token = ""
    while True:
        page, token = webhooks.list_webhooks(page_size=1, page_token=token, uow=uow)
        seen += [w.webhook_id for w in page]
        if not token:
            break
    assert [w for w in seen if w in made] == made


@pytest.mark.integration
@pytest.mark.parametrize("sessions", ["postgresql"], indirect=True)
def test_concurrent_claims_never_share_a_delivery(
    sessions: sessionmaker[Session], uow: SqlUnitOfWork
) -> None:
    register(uow)
    for n in range(20):
        consume(sessions, confirmed(f"c{n}@example.com"))
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def claim_concurrently() -> None:
        barrier.wait()
        due = claim_deliveries(
            uow=SqlUnitOfWork(sessions), limit=10, busy={}, per_endpoint=10, lease=LEASE
        )
        claimed.append([d.delivery_id for d in due])

    threads = [threading.Thread(target=claim_concurrently) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [delivery_id for batch in claimed for delivery_id in batch]
    assert len(every) == len(set(every)) >= 10


def test_retention_deletes_old_finished_rows_with_their_attempts(
    sessions: sessionmaker[Session], uow: SqlUnitOfWork
) -> None:
    ok_id = register(uow)
    retrying_id = register(uow, "https://other.example.com/in")
    envelope = confirmed()
    consume(sessions, envelope)
    transport = FakeTransport(statuses={"other.example.com": 503})
    for claim in [d for d in claim_all(uow) if d.webhook_id in (ok_id, retrying_id)]:
        attempt_delivery(
            claim, uow=uow, transport=transport, resolver=FakeResolver(PUBLIC), policy=policy()
        )
    mailer = EmailPolicy()
    [email] = [
        n
        for n in claim_emails(uow=uow, limit=100, policy=mailer)
        if n.event_id == envelope.event_id
    ]
    send_email(email, uow=uow, mailer=FakeMailer(), policy=mailer)
    # Other tests share the PostgreSQL database: only rows dated 2000 are purged here.
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    with sessions() as session, session.begin():
        for table in ("deliveries", "notifications"):
            session.execute(
                sa.text(f"UPDATE {table} SET created_at = :at WHERE event_id = :event"),
                {"at": long_ago, "event": envelope.event_id},
            )
    before = long_ago + timedelta(days=1)
    with uow:
        assert uow.deliveries.purge_finished(before=before, limit=100) == 1
        assert uow.notifications.purge_finished(before=before, limit=100) == 1
        uow.commit()
    with sessions() as session:
        left = session.execute(
            sa.text("SELECT webhook_id, status FROM deliveries WHERE event_id = :event"),
            {"event": envelope.event_id},
        ).all()
        attempts = session.execute(
            sa.text(
                "SELECT count(*) FROM delivery_attempts a JOIN deliveries d USING (delivery_id)"
                " WHERE d.event_id = :event"
            ),
            {"event": envelope.event_id},
        ).scalar_one()
        orphans = session.execute(
            sa.text(
                "SELECT count(*) FROM delivery_attempts a"
                " LEFT JOIN deliveries d USING (delivery_id) WHERE d.delivery_id IS NULL"
            )
        ).scalar_one()
        emails = session.execute(
            sa.text("SELECT count(*) FROM notifications WHERE event_id = :event"),
            {"event": envelope.event_id},
        ).scalar_one()
    # Endpoints other tests left subscribed got deliveries of this event too (pending: kept).
    ours = [tuple(row) for row in left if row[0] in (ok_id, retrying_id)]
    assert ours == [(retrying_id, "RETRYING")]  # unfinished: kept however old
    assert attempts == 1
    assert orphans == 0
    assert emails == 0
