"""History retention: finished webhook deliveries and emails are deleted after a while."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from eventforge.notifier.service_layer.unit_of_work import UnitOfWork

log = logging.getLogger("eventforge.notifier.retention")

BATCH = 500
"""Rows of each kind deleted per transaction, so a large backlog never holds long locks."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def purge_history(
    *,
    uow: UnitOfWork,
    older_than: timedelta,
    batch: int = BATCH,
    now: Callable[[], datetime] = _utcnow,
) -> int:
    """Delete finished deliveries (with their attempts) and sent or failed emails created more
    than `older_than` ago, batch by batch; pending ones are kept whatever their age. Returns how
    many rows were deleted."""
    before = now() - older_than
    total = 0
    while True:
        with uow:
            deliveries = uow.deliveries.purge_finished(before=before, limit=batch)
            emails = uow.notifications.purge_finished(before=before, limit=batch)
            uow.commit()
        total += deliveries + emails
        if deliveries < batch and emails < batch:
            break
    if total:
        log.info("purged %d finished deliveries and emails older than %s", total, older_than)
    return total
