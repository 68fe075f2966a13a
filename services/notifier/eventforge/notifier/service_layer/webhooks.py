"""Webhook use cases of the API: register, list and delete endpoints; list their deliveries."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from eventforge.notifier.domain.addresses import Refused
from eventforge.notifier.domain.model import Delivery, Webhook
from eventforge.notifier.service_layer.paging import decode_cursor, page_limit, split_page
from eventforge.notifier.service_layer.ports import PageCursor, Resolver
from eventforge.notifier.service_layer.targets import resolve_target
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime.errors import NotFound, Violations
from eventforge.runtime.messaging.envelope import event_types
from eventforge.topology import TOPOLOGY

MAX_DESCRIPTION = 500
MAX_EVENT_TYPES = 32
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_EVENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def deliverable_event_types() -> tuple[str, ...]:
    """The event types the notifier consumes, hence can deliver: those of its queues."""
    found: list[str] = []
    for queue in TOPOLOGY.queues_consumed_by("notifier"):
        found += [t for t in queue.event_types or () if t not in found]
    return tuple(found)


def new_secret() -> str:
    """A signing secret: `whsec_` and 32 random bytes, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class RegisterWebhook:
    url: str
    event_types: tuple[str, ...]
    description: str


def register_webhook(
    *,
    command: RegisterWebhook,
    uow: UnitOfWork,
    resolver: Resolver,
    allowed_hosts: frozenset[str],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Webhook:
    """A new ACTIVE endpoint with a fresh secret, if its URL is allowed (SSRF-checked)."""
    violations = Violations()
    try:
        resolve_target(command.url, resolver=resolver, allowed_hosts=allowed_hosts)
    except Refused as refused:
        violations.add("url", str(refused))
    types = _check_event_types(violations, command.event_types)
    violations.check_text("description", command.description, limit=MAX_DESCRIPTION)
    violations.raise_if_any()
    webhook = Webhook(
        webhook_id=str(uuid.uuid4()),
        url=command.url,
        event_types=types,
        secret=new_secret(),
        description=command.description,
        created_at=now(),
    )
    with uow:
        uow.webhooks.add(webhook)
        uow.commit()
    return webhook


def _check_event_types(violations: Violations, requested: Sequence[str]) -> tuple[str, ...]:
    catalog, deliverable = set(event_types()), deliverable_event_types()
    if not violations.check(bool(requested), "event_types", "must name at least one event type"):
        return ()
    violations.check(
        len(requested) <= MAX_EVENT_TYPES,
        "event_types",
        f"must name at most {MAX_EVENT_TYPES} event types",
    )
    seen: set[str] = set()
    for index, event_type in enumerate(requested[:MAX_EVENT_TYPES]):
        field = f"event_types[{index}]"
        if event_type in seen:
            violations.add(field, "appears twice")
        elif event_type not in catalog:
            violations.add(field, f"{event_type!r} is not an event type of the catalog")
        elif event_type not in deliverable:
            violations.add(
                field,
                f"{event_type!r} is not delivered to webhooks; one of: {', '.join(deliverable)}",
            )
        seen.add(event_type)
    return tuple(sorted(set(requested)))


def list_webhooks(*, page_size: int, page_token: str, uow: UnitOfWork) -> tuple[list[Webhook], str]:
    """A page of endpoints not deleted, oldest first, and the token of the next page."""
    violations = Violations()
    limit = page_limit(violations, page_size)
    cursor = decode_cursor(page_token, violations)
    violations.raise_if_any()
    with uow:
        found = uow.webhooks.page(after=cursor, limit=limit + 1)
    return split_page(found, limit, lambda w: PageCursor(w.created_at, w.webhook_id))


def delete_webhook(
    *,
    webhook_id: str,
    uow: UnitOfWork,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Delete an endpoint and drop its unfinished deliveries (how many); idempotent."""
    violations = Violations()
    violations.check(bool(_UUID.match(webhook_id)), "webhook_id", "must be a webhook id")
    violations.raise_if_any()
    with uow:
        webhook = uow.webhooks.get(webhook_id, for_update=True)
        if webhook is None:
            raise NotFound(f"webhook {webhook_id} not found")
        if not webhook.delete(now()):
            return 0
        uow.webhooks.save(webhook)
        dropped = uow.deliveries.drop_pending(webhook_id)
        uow.commit()
    return dropped


def list_deliveries(
    *, webhook_id: str, event_id: str, page_size: int, page_token: str, uow: UnitOfWork
) -> tuple[list[Delivery], str]:
    """A page of deliveries with their attempts, newest first, optionally of one endpoint/event."""
    violations = Violations()
    if webhook_id:
        violations.check(bool(_UUID.match(webhook_id)), "webhook_id", "must be a webhook id")
    if event_id:
        violations.check(bool(_EVENT_ID.match(event_id)), "event_id", "must be an event id")
    limit = page_limit(violations, page_size)
    cursor = decode_cursor(page_token, violations)
    violations.raise_if_any()
    with uow:
        found = uow.deliveries.page(
            webhook_id=webhook_id, event_id=event_id, after=cursor, limit=limit + 1
        )
    return split_page(found, limit, lambda d: PageCursor(d.created_at, d.delivery_id))
