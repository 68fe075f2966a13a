"""A notifier killed between SES's answer and its commit sends the email once, not twice.

Real parts: PostgreSQL, the emulator over HTTP (SES with its configuration set publishing Send
events to SNS → the `notifier-email` queue), a sender process killed with SIGKILL on SES's
answer, and the real notifier worker process that picks up after it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventforge.notifier.adapters.notification_repository import SqlNotifications
from eventforge.notifier.bootstrap import bootstrap
from eventforge.notifier.domain.model import Notification, NotificationStatus
from eventforge.runtime import aws
from eventforge.runtime.emulator import Emulator
from eventforge.runtime.messaging.schema import outbox_table as outbox
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import read_span_file
from eventforge.topology import TOPOLOGY
from tests.fixtures.emulator import ses_messages_to
from tests.fixtures.polling import eventually
from tests.fixtures.services import StartService, stack_environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def pending_email(settings: Settings, cause: dict[str, str] | None = None) -> Notification:
    """One PENDING email, as fan-out writes it, to an address no other test uses."""
    now = datetime.now(UTC)
    notification = Notification(
        notification_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event_type="order.confirmed",
        recipient=f"crash-{uuid.uuid4().hex[:12]}@example.com",
        subject="Your order is confirmed",
        text_body="Thank you.",
        html_body="<p>Thank you.</p>",
        created_at=now,
        next_attempt_at=now,
        cause=cause or {},
    )
    app = bootstrap(settings)
    try:
        with app.uow() as uow:
            assert uow.notifications.add_if_absent(notification)
            uow.commit()
    finally:
        app.engine.dispose()
    return notification


def stored(settings: Settings, notification_id: str) -> Notification:
    app = bootstrap(settings)
    try:
        with app.sessions() as session:
            found = SqlNotifications(session).get(notification_id)
    finally:
        app.engine.dispose()
    assert found is not None
    return found


def once_sent(settings: Settings, notification_id: str) -> Notification | None:
    found = stored(settings, notification_id)
    return found if found.status is NotificationStatus.SENT else None


def kill_after_ses_answer(settings: Settings, notification: Notification) -> str:
    """Run the sender that dies on SES's answer; SES's message id."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.notifier.crashing_sender", notification.notification_id],
        env=stack_environment(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()


def drop_email_events(settings: Settings) -> None:
    """Delete whatever waits on the notifier's email queue (PurgeQueue allows one a minute)."""
    sqs = aws.sqs(settings)
    name = TOPOLOGY.resolve(settings.name_prefix).queues["notifier-email"].name
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", []):
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def test_the_send_event_records_the_email_of_a_killed_sender_and_nothing_is_sent_twice(
    stack_settings: Settings, emulator: Emulator, start_service: StartService
) -> None:
    drop_email_events(stack_settings)
    notification = pending_email(stack_settings)
    message_id = kill_after_ses_answer(stack_settings, notification)
    [accepted] = ses_messages_to(emulator, notification.recipient)
    assert accepted.id == message_id
    assert stored(stack_settings, notification.notification_id).status is (
        NotificationStatus.SENDING
    )
    worker = start_service("notifier", "worker")  # the lease (120 s) is still running
    sent = eventually(
        partial(once_sent, stack_settings, notification.notification_id),
        timeout=60,
        what="the Send event to mark the email SENT",
    )
    assert (sent.provider_message_id, sent.attempts) == (message_id, 1)
    assert len(ses_messages_to(emulator, notification.recipient)) == 1
    assert '"email_outcome": "confirmed"' in worker.log()


def test_with_no_send_event_the_email_is_sent_again_once_its_lease_runs_out(
    stack_settings: Settings, emulator: Emulator, start_service: StartService
) -> None:
    """The mechanism's other half: without SES's event the lease decides, and says so."""
    settings = Settings(**{**stack_settings.model_dump(), "notifier_email_lease_seconds": 2})
    notification = pending_email(settings)
    kill_after_ses_answer(settings, notification)
    drop_email_events(settings)  # as if SES had never accepted it
    worker = start_service("notifier", "worker", settings=settings)
    sent = eventually(
        partial(once_sent, settings, notification.notification_id),
        timeout=60,
        what="the email to be sent again after its lease",
    )
    assert sent.attempts == 2
    assert len(ses_messages_to(emulator, notification.recipient)) == 2
    assert '"email_outcome": "resent"' in worker.log()


def test_an_email_sent_after_a_restart_continues_the_trace_and_request_id_of_its_event(
    stack_settings: Settings, start_service: StartService, tmp_path: Path
) -> None:
    """The cause is stored with the email: the worker that sends it never saw the event."""
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    request_id = f"restart-{uuid.uuid4().hex[:8]}"
    cause = {"traceparent": f"00-{trace_id}-{parent_id}-01", "baggage": f"request_id={request_id}"}
    notification = pending_email(stack_settings, cause)
    spans = tmp_path / "spans.jsonl"
    worker = start_service("notifier", "worker", env={"EVENTFORGE_SPAN_FILE": str(spans)})
    eventually(
        partial(once_sent, stack_settings, notification.notification_id),
        timeout=60,
        what="the email to be sent",
    )
    worker.stop()  # flushes its spans
    records = read_span_file(spans)
    [send] = [
        r
        for r in records
        if r["name"] == "email send"
        and r["attributes"].get("eventforge.notification_id") == notification.notification_id
    ]
    assert (send["trace_id"], send["parent_span_id"]) == (trace_id, parent_id)
    assert send["request_id"] == request_id
    ses = [r for r in records if r["parent_span_id"] == send["span_id"]]
    assert any(r["attributes"].get("rpc.service") == "SES" for r in ses)
    assert all(r["request_id"] == request_id for r in ses)
    # The notification.sent it published carries the request id too (its outbox row).
    app = bootstrap(stack_settings)
    try:
        with app.engine.connect() as connection:
            announced = connection.execute(
                sa.select(outbox.c.event_type, outbox.c.request_id).where(
                    outbox.c.subject == notification.notification_id
                )
            ).all()
    finally:
        app.engine.dispose()
    assert [tuple(row) for row in announced] == [("notification.sent", request_id)]
