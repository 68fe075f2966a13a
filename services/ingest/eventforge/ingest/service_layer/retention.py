"""Retention: provider event ids are forgotten once providers no longer redeliver them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from eventforge.ingest.adapters.repository import purge_received_before

log = logging.getLogger("eventforge.ingest.retention")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def purge_provider_events(
    session: Session, *, older_than: timedelta, now: Callable[[], datetime] = _utcnow
) -> int:
    """Delete, in the caller's transaction, the provider events received more than
    `older_than` ago; how many were. Events that old are refused anyway (`StaleEvent`)."""
    deleted = purge_received_before(session, now() - older_than)
    if deleted:
        log.info("forgot %d provider event ids older than %s", deleted, older_than)
    return deleted
