"""Emails: claim the pending ones, send each through the mailer, list what was sent.

The email row is written in the event's transaction and sent only after it commits. A crash
between the provider accepting an email and the SENT mark being committed sends it again once
the claim's lease runs out: that window is one provider call and one commit, the smallest an
at-least-once sender can have (SES has no idempotency key to close it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opentelemetry import trace

from eventforge.notifier.domain.model import Notification, NotificationStatus
from eventforge.notifier.domain.retry import Backoff
from eventforge.notifier.service_layer.paging import decode_cursor, page_limit, split_page
from eventforge.notifier.service_layer.ports import Mailer, MailError, PageCursor
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime.db import retry_while_unavailable
from eventforge.runtime.errors import Violations

log = logging.getLogger("eventforge.notifier.emails")
tracer = trace.get_tracer("eventforge.notifier.emails")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EmailPolicy:
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    lease: timedelta = timedelta(minutes=2)
    """How long a claimed email stays hidden from other senders (longer than a send)."""


def claim_emails(
    *, uow: UnitOfWork, limit: int, policy: EmailPolicy, now: Callable[[], datetime] = _utcnow
) -> list[Notification]:
    """Up to `limit` pending emails that are due, each counted as an attempt and leased."""
    if limit <= 0:
        return []
    moment = now()
    with uow:
        claimed = uow.notifications.claim_due(now=moment, limit=limit, until=moment + policy.lease)
        uow.commit()
    return claimed


def send_email(
    notification: Notification,
    *,
    uow: UnitOfWork,
    mailer: Mailer,
    policy: EmailPolicy,
    now: Callable[[], datetime] = _utcnow,
) -> NotificationStatus | None:
    """Send one claimed email and record the outcome; its status then (None if it vanished)."""
    with tracer.start_as_current_span("email send") as span:
        span.set_attribute("eventforge.event_id", notification.event_id)
        try:
            message_id = mailer.send(
                recipient=notification.recipient,
                subject=notification.subject,
                text=notification.text_body,
                html=notification.html_body,
            )
        except MailError as error:
            span.set_status(trace.StatusCode.ERROR, str(error))
            log.warning("email %s not sent: %s", notification.notification_id, error)
            return _record(notification.notification_id, uow, failure=error, policy=policy, now=now)
        # Sent: recording it must outlast a database blip, or the email goes out again.
        return retry_while_unavailable(
            lambda: _record(
                notification.notification_id, uow, sent=message_id, policy=policy, now=now
            ),
            what=f"email {notification.notification_id} sent",
        )


def _record(
    notification_id: str,
    uow: UnitOfWork,
    *,
    policy: EmailPolicy,
    now: Callable[[], datetime],
    sent: str = "",
    failure: MailError | None = None,
) -> NotificationStatus | None:
    with uow:
        stored = uow.notifications.get(notification_id, for_update=True)
        if stored is None:
            return None
        if failure is None:
            stored.sent(sent, now())
        else:
            stored.send_failed(
                str(failure),
                now(),
                permanent=failure.permanent,
                max_attempts=policy.max_attempts,
                backoff=policy.backoff,
            )
        uow.notifications.save(uow.track(stored))
        uow.commit()
    return stored.status


def list_notifications(
    *, event_id: str, recipient: str, page_size: int, page_token: str, uow: UnitOfWork
) -> tuple[list[Notification], str]:
    """A page of emails, newest first, optionally of one event or one recipient."""
    violations = Violations()
    violations.check_text("event_id", event_id, limit=128)
    violations.check_text("recipient", recipient, limit=254)
    limit = page_limit(violations, page_size)
    cursor = decode_cursor(page_token, violations)
    violations.raise_if_any()
    with uow:
        found = uow.notifications.page(
            event_id=event_id, recipient=recipient.strip().lower(), after=cursor, limit=limit + 1
        )
    return split_page(found, limit, lambda n: PageCursor(n.created_at, n.notification_id))
