"""Emails: claim the due ones, send each through the mailer, list what was sent.

The email row is written in the event's transaction and sent only after it commits. Claiming
it marks it SENDING (one more attempt) with a lease; the send is tagged with the email's id,
and the provider publishes an event for every email it accepts (SES event publishing), which
comes back to the notifier on its `email` queue (`record_provider_event`).

So a crash between the provider accepting an email and our recording it costs latency, not a
duplicate: the email stays SENDING until the provider's Send event records it as SENT, and it
is sent again only if its lease runs out with no event (the provider never had it). A call
whose answer was lost (a timeout after the request went out) is handled the same way: the
email stays SENDING and waits one lease for the event. SES has no idempotency key and replaces
any Message-ID we set, so the event is the only way to learn what it did with a call.

Every email whose outcome was unknown is logged with `email_outcome`: `unknown` (an answer
lost), `resent` (sent again because no event came), `duplicate` (the provider reported a
second acceptance), `abandoned` (the last attempt's outcome stayed unknown), `confirmed` (the
event recorded the email before its answer was: after a crash, a lost answer, or simply first);
the cloud alarms on `resent`, `duplicate` and `abandoned`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opentelemetry import trace

from eventforge.notifier.domain.model import Acceptance, Notification, NotificationStatus
from eventforge.notifier.domain.retry import Backoff
from eventforge.notifier.service_layer.paging import decode_cursor, page_limit, split_page
from eventforge.notifier.service_layer.ports import (
    NOTIFICATION_TAG,
    Mailer,
    MailError,
    MailOutcomeUnknown,
    PageCursor,
)
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime import deferred
from eventforge.runtime.db import retry_while_unavailable
from eventforge.runtime.errors import Violations
from eventforge.runtime.messaging.messages import SesEvent

log = logging.getLogger("eventforge.notifier.emails")
tracer = trace.get_tracer("eventforge.notifier.emails")

ACCEPTED_EVENTS = frozenset({"Send", "Delivery", "Bounce", "Complaint", "DeliveryDelay"})
"""Provider events that prove it accepted the email (each follows a Send)."""
REJECT_EVENT = "Reject"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EmailPolicy:
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    lease: timedelta = timedelta(minutes=2)
    """How long a claimed email stays SENDING before it is due again with nothing recorded:
    longer than a send, and than the provider's Send event takes to arrive."""


def claim_emails(
    *, uow: UnitOfWork, limit: int, policy: EmailPolicy, now: Callable[[], datetime] = _utcnow
) -> list[Notification]:
    """Up to `limit` due emails, each SENDING (one more attempt) under a lease.

    An email due while SENDING had an attempt whose outcome was never recorded and no Send
    event within a lease: it is sent again (logged `email_outcome=resent`), or given up on
    when its attempts have run out.
    """
    if limit <= 0:
        return []
    moment = now()
    claimed: list[Notification] = []
    with uow:
        for notification in uow.notifications.due(now=moment, limit=limit):
            if notification.outcome_unknown:
                if notification.attempts >= policy.max_attempts:
                    notification.give_up_unknown(moment)
                    log.error(
                        "email %s failed: %s",
                        notification.notification_id,
                        notification.last_error,
                        extra={"email_outcome": "abandoned", **_fields(notification)},
                    )
                    uow.notifications.save(uow.track(notification))
                    continue
                log.warning(
                    "email %s sent again: attempt %d's outcome is unknown and no Send event came",
                    notification.notification_id,
                    notification.attempts,
                    extra={"email_outcome": "resent", **_fields(notification)},
                )
            notification.claim(moment, lease=policy.lease)
            uow.notifications.save(uow.track(notification))
            claimed.append(notification)
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
    with deferred.resumed(
        tracer,
        "email send",
        notification.cause,
        caused_at=notification.created_at,
        now=now(),
        attributes={
            "eventforge.event_id": notification.event_id,
            "eventforge.event_type": notification.event_type,
            "eventforge.notification_id": notification.notification_id,
            "eventforge.attempt": notification.attempts,
        },
    ) as span:
        try:
            message_id = mailer.send(
                notification_id=notification.notification_id,
                recipient=notification.recipient,
                subject=notification.subject,
                text=notification.text_body,
                html=notification.html_body,
            )
        except MailError as refused:
            error = refused
            outcome = "unknown" if isinstance(error, MailOutcomeUnknown) else "refused"
            span.set_status(trace.StatusCode.ERROR, str(error))
            log.warning(
                "email %s %s: %s",
                notification.notification_id,
                "outcome unknown" if outcome == "unknown" else "not sent",
                error,
                extra={"email_outcome": outcome, **_fields(notification)},
            )
            return retry_while_unavailable(
                lambda: _record(
                    notification.notification_id, uow, failure=error, policy=policy, now=now
                ),
                what=f"email {notification.notification_id} outcome",
            )
        span.set_attribute("eventforge.provider_message_id", message_id)
        # Sent: recording it should outlast a database blip (else the Send event records it).
        return retry_while_unavailable(
            lambda: _record(
                notification.notification_id, uow, sent=message_id, policy=policy, now=now
            ),
            what=f"email {notification.notification_id} sent",
        )


def record_provider_event(
    event: SesEvent, *, uow: UnitOfWork, now: Callable[[], datetime] = _utcnow
) -> Acceptance | None:
    """Record what the provider's event says about one of our emails (None: not ours, or an
    event that changes nothing here)."""
    notification_id = event.tag(NOTIFICATION_TAG)
    if notification_id is None:
        log.info(
            "%s event of message %s has no %s tag",
            event.event_type,
            event.message_id,
            NOTIFICATION_TAG,
        )
        return None
    with uow:
        stored = uow.notifications.get(notification_id, for_update=True)
        if stored is None:
            log.info("%s event for unknown email %s", event.event_type, notification_id)
            return None
        was_unknown = stored.outcome_unknown
        acceptance: Acceptance | None = None
        if event.event_type == REJECT_EVENT:
            stored.rejected(str(event.detail.get("reason", "")))
        elif event.event_type in ACCEPTED_EVENTS:
            acceptance = stored.accepted(event.message_id, now())
        else:
            return None
        # SES's event carries no trace context: recording it continues the email's cause (the
        # request's trace), linked to the delivery of SES's event.
        with deferred.resumed(
            tracer,
            f"email {event.event_type} event",
            stored.cause,
            caused_at=stored.created_at,
            now=now(),
            attributes={
                "eventforge.notification_id": stored.notification_id,
                "eventforge.provider_message_id": event.message_id,
            },
            links=_current_as_link(),
        ):
            uow.notifications.save(uow.track(stored))
            uow.commit()
            _log_acceptance(stored, acceptance, event.message_id, confirmed=was_unknown)
    return acceptance


def _current_as_link() -> list[trace.Link]:
    current = trace.get_current_span().get_span_context()
    return [trace.Link(current)] if current.is_valid else []


def _record(
    notification_id: str,
    uow: UnitOfWork,
    *,
    policy: EmailPolicy,
    now: Callable[[], datetime],
    sent: str = "",
    failure: MailError | None = None,
) -> NotificationStatus | None:
    acceptance: Acceptance | None = None
    with uow:
        stored = uow.notifications.get(notification_id, for_update=True)
        if stored is None:
            return None
        if isinstance(failure, MailOutcomeUnknown):
            stored.answer_lost(str(failure), now(), wait=policy.lease)
        elif failure is not None:
            stored.send_failed(
                str(failure),
                now(),
                permanent=failure.permanent,
                max_attempts=policy.max_attempts,
                backoff=policy.backoff,
            )
        else:
            acceptance = stored.accepted(sent, now())
        uow.notifications.save(uow.track(stored))
        uow.commit()
    if acceptance is not None:
        _log_acceptance(stored, acceptance, sent, confirmed=False)
    return stored.status


def _log_acceptance(
    notification: Notification, acceptance: Acceptance | None, message_id: str, *, confirmed: bool
) -> None:
    if acceptance is Acceptance.DUPLICATE:
        log.error(
            "email %s was sent twice: provider messages %s and %s",
            notification.notification_id,
            notification.provider_message_id,
            message_id,
            extra={"email_outcome": "duplicate", **_fields(notification)},
        )
    elif acceptance is Acceptance.RECORDED and confirmed:
        log.info(
            "email %s recorded SENT from the provider's event, before (or without) its answer",
            notification.notification_id,
            extra={"email_outcome": "confirmed", **_fields(notification)},
        )


def _fields(notification: Notification) -> dict[str, object]:
    return {
        "notification_id": notification.notification_id,
        "event_id": notification.event_id,
        "attempts": notification.attempts,
    }


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
