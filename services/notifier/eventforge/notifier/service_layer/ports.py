"""What the notifier's use cases need from the outside world, as abstract ports."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from eventforge.notifier.domain.model import Delivery, Notification, Webhook


@dataclass(frozen=True)
class PageCursor:
    """Position after the last item of a page: its creation time and id."""

    created_at: datetime
    item_id: str


@dataclass(frozen=True)
class PinnedTarget:
    """A checked webhook URL and the address it was checked at: connect there and nowhere else."""

    url: str
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class DueDelivery:
    """A delivery due for an attempt, with what the attempt needs from its endpoint."""

    delivery_id: str
    webhook_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    body: str
    attempt_number: int
    created_at: datetime
    cause: Mapping[str, str]
    """The trace context of the event that caused the delivery."""


class WebhookRepository(abc.ABC):
    @abc.abstractmethod
    def add(self, webhook: Webhook) -> None:
        """Store a new endpoint with its event types."""

    @abc.abstractmethod
    def get(self, webhook_id: str, *, for_update: bool = False) -> Webhook | None:
        """An endpoint, deleted ones included; `for_update` locks it until the unit ends."""

    @abc.abstractmethod
    def save(self, webhook: Webhook) -> None:
        """Persist status, failure counters and deletion."""

    @abc.abstractmethod
    def page(self, *, after: PageCursor | None, limit: int) -> list[Webhook]:
        """Endpoints not deleted, oldest first, after the cursor."""

    @abc.abstractmethod
    def subscribed_to(self, event_type: str) -> list[Webhook]:
        """Endpoints not deleted that receive `event_type`."""


class DeliveryRepository(abc.ABC):
    @abc.abstractmethod
    def add_if_absent(self, delivery: Delivery) -> bool:
        """Store a new delivery; False when the endpoint already has one for the event."""

    @abc.abstractmethod
    def get(self, delivery_id: str, *, for_update: bool = False) -> Delivery | None:
        """A delivery with its attempts."""

    @abc.abstractmethod
    def save(self, delivery: Delivery) -> None:
        """Persist the status, next attempt time and attempts not stored yet."""

    @abc.abstractmethod
    def page(
        self, *, webhook_id: str, event_id: str, after: PageCursor | None, limit: int
    ) -> list[Delivery]:
        """Deliveries with their attempts, newest first, filtered by the non-empty arguments."""

    @abc.abstractmethod
    def due(self, *, now: datetime, limit: int) -> list[DueDelivery]:
        """Deliveries whose next attempt is due, soonest first, locked (others skip them)."""

    @abc.abstractmethod
    def lease(self, delivery_ids: Sequence[str], *, until: datetime) -> None:
        """Push the next attempt of claimed deliveries to `until`, so no one else claims them."""

    @abc.abstractmethod
    def purge_finished(self, *, before: datetime, limit: int) -> int:
        """Delete up to `limit` finished deliveries (with their attempts) created before
        `before`, oldest first; how many were deleted."""

    @abc.abstractmethod
    def drop_pending(self, webhook_id: str) -> int:
        """Delete the endpoint's unfinished deliveries; how many."""


class NotificationRepository(abc.ABC):
    @abc.abstractmethod
    def add_if_absent(self, notification: Notification) -> bool:
        """Store a new email; False when the event already has one for the recipient."""

    @abc.abstractmethod
    def get(self, notification_id: str, *, for_update: bool = False) -> Notification | None:
        """One email."""

    @abc.abstractmethod
    def save(self, notification: Notification) -> None:
        """Persist status, provider id, error and next attempt time."""

    @abc.abstractmethod
    def page(
        self, *, event_id: str, recipient: str, after: PageCursor | None, limit: int
    ) -> list[Notification]:
        """Emails, newest first, filtered by the non-empty arguments."""

    @abc.abstractmethod
    def purge_finished(self, *, before: datetime, limit: int) -> int:
        """Delete up to `limit` sent or failed emails created before `before`, oldest first;
        how many were deleted."""

    @abc.abstractmethod
    def due(self, *, now: datetime, limit: int) -> list[Notification]:
        """Emails due for an attempt (pending, or sending whose lease ran out), soonest first,
        locked until the unit ends (other senders skip them)."""


NOTIFICATION_TAG = "eventforge-notification-id"
"""The tag every email is sent with: the provider's events about it name the email by it."""


class MailError(Exception):
    """The mail provider did not accept an email; `permanent` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class MailOutcomeUnknown(MailError):
    """The call may have reached the provider but no answer came (a timeout, a dropped
    connection): the email may have been sent."""


class Mailer(abc.ABC):
    @abc.abstractmethod
    def send(
        self, *, notification_id: str, recipient: str, subject: str, text: str, html: str
    ) -> str:
        """Send one email from the configured sender, tagged with its notification id (the
        provider's events about it carry the tag); returns the provider's message id."""


class TransportError(Exception):
    """No HTTP answer came: refused, reset, timed out, TLS failure."""


class WebhookTransport(abc.ABC):
    @abc.abstractmethod
    def post(self, target: PinnedTarget, headers: Mapping[str, str], body: bytes) -> int:
        """POST to the target's address (never another), redirects not followed; the status."""


class FilesUnavailable(Exception):
    """The files service did not answer; the event is retried later."""


class FilesClient(abc.ABC):
    @abc.abstractmethod
    def download_url(self, file_id: str) -> str:
        """A presigned link to a stored file."""


class ResolutionFailed(Exception):
    """A host name has no address."""


class Resolver(abc.ABC):
    @abc.abstractmethod
    def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to (IPv4 and IPv6), as strings."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer(abc.ABC):
    @abc.abstractmethod
    def render(self, template: str, subject: str, context: Mapping[str, object]) -> RenderedEmail:
        """The plain-text and HTML bodies of a template, filled with `context`."""
