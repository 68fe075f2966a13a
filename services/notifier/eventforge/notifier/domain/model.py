"""Webhook endpoints, their deliveries with every attempt, and emails; transitions record events."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from eventforge.notifier.domain.retry import Backoff


class InvalidTransition(Exception):
    """A change the entity's current status does not allow."""


class WebhookStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    FAILING = "FAILING"


class DeliveryStatus(enum.Enum):
    PENDING = "PENDING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)


class NotificationStatus(enum.Enum):
    PENDING = "PENDING"
    SENDING = "SENDING"
    """Handed to the provider, its answer not recorded yet (in flight, a crash, a lost reply)."""
    SENT = "SENT"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (NotificationStatus.SENT, NotificationStatus.FAILED)


class Acceptance(enum.Enum):
    """What the provider's word that it accepted an email (its answer, or its event) meant."""

    RECORDED = "recorded"
    """The email is SENT now."""
    KNOWN = "known"
    """It was already SENT with this provider id: the same send, told twice."""
    DUPLICATE = "duplicate"
    """It was already SENT with another provider id: the provider sent it twice."""


# Domain events, past tense; the unit of work publishes them as notification.* events.
@dataclass(frozen=True)
class EndpointFailing:
    webhook_id: str
    url: str
    consecutive_failures: int
    last_error: str
    cause_event_id: str


@dataclass(frozen=True)
class WebhookDelivered:
    delivery_id: str
    webhook_id: str
    cause_event_id: str


@dataclass(frozen=True)
class EmailSent:
    notification_id: str
    recipient: str
    cause_event_id: str


Event = EndpointFailing | WebhookDelivered | EmailSent


@dataclass
class Webhook:
    """An endpoint, the event types it receives, its secret and its health."""

    webhook_id: str
    url: str
    event_types: tuple[str, ...]
    secret: str
    description: str
    created_at: datetime
    status: WebhookStatus = WebhookStatus.ACTIVE
    consecutive_failures: int = 0
    last_error: str = ""
    deleted_at: datetime | None = None
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def attempt_succeeded(self) -> None:
        """A 2xx answer: the failure streak ends and the endpoint is ACTIVE again."""
        self.consecutive_failures = 0
        self.last_error = ""
        self.status = WebhookStatus.ACTIVE

    def attempt_failed(self, *, error: str, cause_event_id: str, failing_after: int) -> None:
        """One more failure in a row; the one that reaches `failing_after` marks it FAILING."""
        self.consecutive_failures += 1
        self.last_error = error
        if self.status is WebhookStatus.ACTIVE and self.consecutive_failures >= failing_after:
            self.status = WebhookStatus.FAILING
            self.events.append(
                EndpointFailing(
                    self.webhook_id, self.url, self.consecutive_failures, error, cause_event_id
                )
            )

    def delete(self, now: datetime) -> bool:
        """Stop delivering and forget the secret; False when already deleted (idempotent)."""
        if self.deleted:
            return False
        self.deleted_at = now
        self.secret = ""
        return True


@dataclass(frozen=True)
class DeliveryAttempt:
    """One HTTP attempt: the status answered (0 when none came), latency and why it failed."""

    number: int
    http_status: int
    latency_ms: int
    error: str
    attempted_at: datetime

    @property
    def succeeded(self) -> bool:
        return not self.error and 200 <= self.http_status < 300


@dataclass
class Delivery:
    """One event to one endpoint, retried with backoff until it succeeds or attempts run out."""

    delivery_id: str
    webhook_id: str
    event_id: str
    event_type: str
    body: str
    created_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    cause: Mapping[str, str] = field(default_factory=dict)
    """The trace context (W3C headers) of the event that caused it: its attempts continue it."""
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @property
    def next_attempt_number(self) -> int:
        return len(self.attempts) + 1

    def record(self, attempt: DeliveryAttempt, *, max_attempts: int, backoff: Backoff) -> None:
        """Add an attempt and move on: SUCCEEDED, RETRYING after a backoff, or FAILED."""
        if self.status.finished:
            raise InvalidTransition(f"delivery {self.delivery_id} is {self.status.value}")
        self.attempts.append(attempt)
        if attempt.succeeded:
            self.status, self.next_attempt_at = DeliveryStatus.SUCCEEDED, None
            self.events.append(WebhookDelivered(self.delivery_id, self.webhook_id, self.event_id))
        elif len(self.attempts) >= max_attempts:
            self.status, self.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delay = timedelta(seconds=backoff.delay(len(self.attempts)))
            self.status, self.next_attempt_at = (
                DeliveryStatus.RETRYING,
                attempt.attempted_at + delay,
            )


@dataclass
class Notification:
    """An email an event caused: rendered once, sent after the event's transaction commits."""

    notification_id: str
    event_id: str
    event_type: str
    recipient: str
    subject: str
    text_body: str
    html_body: str
    created_at: datetime
    channel: str = "email"
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    provider_message_id: str = ""
    last_error: str = ""
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    cause: Mapping[str, str] = field(default_factory=dict)
    """The trace context (W3C headers) of the event that caused it: its sends continue it."""
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    @property
    def outcome_unknown(self) -> bool:
        """A send was started and what the provider did with it was never recorded."""
        return self.status is NotificationStatus.SENDING

    def claim(self, now: datetime, *, lease: timedelta) -> None:
        """Start an attempt: SENDING, hidden from other senders until the lease runs out.

        If the lease runs out with nothing recorded (the sender died, or the answer was lost),
        the email is due again — unless the provider's own event has shown it was sent.
        """
        if self.status.finished:
            raise InvalidTransition(f"notification {self.notification_id} is {self.status.value}")
        self.status = NotificationStatus.SENDING
        self.attempts += 1
        self.next_attempt_at = now + lease

    def accepted(self, provider_message_id: str, now: datetime) -> Acceptance:
        """The provider accepted the email (its answer to our call, or its Send event)."""
        if self.status is NotificationStatus.SENT:
            if provider_message_id == self.provider_message_id:
                return Acceptance.KNOWN
            return Acceptance.DUPLICATE
        self.status, self.sent_at, self.next_attempt_at = NotificationStatus.SENT, now, None
        self.provider_message_id = provider_message_id
        self.last_error = ""
        self.events.append(EmailSent(self.notification_id, self.recipient, self.event_id))
        return Acceptance.RECORDED

    def send_failed(
        self, error: str, now: datetime, *, permanent: bool, max_attempts: int, backoff: Backoff
    ) -> None:
        """The provider refused: retry later with backoff, or give up when it cannot help."""
        if self.status.finished:
            return
        self.last_error = error
        if permanent or self.attempts >= max_attempts:
            self.status, self.next_attempt_at = NotificationStatus.FAILED, None
        else:
            self.status = NotificationStatus.PENDING
            self.next_attempt_at = now + timedelta(seconds=backoff.delay(self.attempts))

    def answer_lost(self, error: str, now: datetime, *, wait: timedelta) -> None:
        """The call may have reached the provider, but no answer came: stay SENDING, and wait
        `wait` for the provider's event before the email is due again."""
        if self.status is not NotificationStatus.SENDING:
            return
        self.last_error = f"outcome unknown: {error}"
        self.next_attempt_at = now + wait

    def give_up_unknown(self, now: datetime) -> None:
        """Attempts ran out with the last outcome unknown: FAILED, and said so."""
        if self.status is not NotificationStatus.SENDING:
            return
        self.status, self.next_attempt_at = NotificationStatus.FAILED, None
        self.last_error = (
            f"outcome of attempt {self.attempts} unknown and no Send event came; "
            f"not sent again after {self.attempts} attempts"
        )

    def rejected(self, reason: str) -> None:
        """The provider accepted the call, then refused to send the email (a Reject event)."""
        self.last_error = f"rejected by the provider: {reason}"
        if not self.status.finished:
            self.status, self.next_attempt_at = NotificationStatus.FAILED, None
