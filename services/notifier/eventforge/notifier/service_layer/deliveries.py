"""Webhook deliveries: claim the due ones, make one signed attempt each, record what happened."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from eventforge.notifier.domain.addresses import Refused
from eventforge.notifier.domain.model import DeliveryAttempt
from eventforge.notifier.domain.retry import Backoff
from eventforge.notifier.service_layer.ports import (
    DueDelivery,
    Resolver,
    TransportError,
    WebhookTransport,
)
from eventforge.notifier.service_layer.targets import resolve_target
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork
from eventforge.notifier.signing import sign
from eventforge.runtime import deferred
from eventforge.runtime.db import retry_while_unavailable

log = logging.getLogger("eventforge.notifier.deliveries")
tracer = trace.get_tracer("eventforge.notifier.deliveries")

USER_AGENT = "EventForge-Webhooks/1"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How deliveries are attempted, retried and judged."""

    max_attempts: int
    failing_after: int
    backoff: Backoff
    allowed_hosts: frozenset[str]
    lease: timedelta
    """How long a claimed delivery stays hidden from other dispatchers (longer than an attempt)."""


def claim_deliveries(
    *,
    uow: UnitOfWork,
    limit: int,
    busy: Mapping[str, int],
    per_endpoint: int,
    lease: timedelta,
    now: Callable[[], datetime] = _utcnow,
) -> list[DueDelivery]:
    """Up to `limit` due deliveries, at most `per_endpoint` in flight per endpoint, leased.

    `busy` counts the attempts already in flight per endpoint, so one slow endpoint holds at
    most `per_endpoint` of the pool and the others' deliveries keep flowing.
    """
    if limit <= 0:
        return []
    moment = now()
    with uow:
        candidates = uow.deliveries.due(now=moment, limit=limit * 4)
        counts = dict(busy)
        chosen: list[DueDelivery] = []
        for due in candidates:
            if len(chosen) == limit:
                break
            if counts.get(due.webhook_id, 0) >= per_endpoint:
                continue
            counts[due.webhook_id] = counts.get(due.webhook_id, 0) + 1
            chosen.append(due)
        uow.deliveries.lease([due.delivery_id for due in chosen], until=moment + lease)
        uow.commit()
    return chosen


def signed_headers(due: DueDelivery, timestamp: int) -> dict[str, str]:
    """The headers of one attempt; the signature covers the timestamp and the body."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "EventForge-Event-Id": due.event_id,
        "EventForge-Event-Type": due.event_type,
        "EventForge-Delivery-Id": due.delivery_id,
        "EventForge-Timestamp": str(timestamp),
        "EventForge-Signature": sign(due.secret, timestamp, due.body),
    }


def attempt_delivery(
    due: DueDelivery,
    *,
    uow: UnitOfWork,
    transport: WebhookTransport,
    resolver: Resolver,
    policy: DeliveryPolicy,
    now: Callable[[], datetime] = _utcnow,
    monotonic: Callable[[], float] = time.monotonic,
) -> DeliveryAttempt | None:
    """POST the delivery once (SSRF-checked again, pinned) and record the attempt."""
    started_at = now()
    with deferred.resumed(
        tracer,
        "webhook deliver",
        due.cause,
        caused_at=due.created_at,
        now=started_at,
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": "POST",
            "server.address": urlsplit(due.url).hostname or "",
            "eventforge.webhook_id": due.webhook_id,
            "eventforge.event_id": due.event_id,
            "eventforge.event_type": due.event_type,
            "eventforge.attempt": due.attempt_number,
        },
    ) as span:
        started = monotonic()
        status, error = 0, ""
        try:
            target = resolve_target(due.url, resolver=resolver, allowed_hosts=policy.allowed_hosts)
            headers = signed_headers(due, int(started_at.timestamp()))
            status = transport.post(target, headers, due.body.encode())
            error = _status_error(status)
        except Refused as refused:
            error = f"refused: {refused}"
        except TransportError as failed:
            error = str(failed) or type(failed).__name__
        latency_ms = int((monotonic() - started) * 1000)
        span.set_attribute("http.response.status_code", status)
        if error:
            span.set_status(trace.StatusCode.ERROR, error)
        attempt = DeliveryAttempt(due.attempt_number, status, latency_ms, error, started_at)
        # Recording must outlast a database blip: an unrecorded success is POSTed again.
        return retry_while_unavailable(
            lambda: record_attempt(due, attempt, uow=uow, policy=policy),
            what=f"attempt of delivery {due.delivery_id}",
        )


def record_attempt(
    due: DueDelivery, attempt: DeliveryAttempt, *, uow: UnitOfWork, policy: DeliveryPolicy
) -> DeliveryAttempt | None:
    """Store an attempt and its consequences; None when the delivery is gone or finished."""
    with uow:
        # The endpoint first, then the delivery: the order every writer of both follows.
        webhook = uow.webhooks.get(due.webhook_id, for_update=True)
        delivery = uow.deliveries.get(due.delivery_id, for_update=True)
        if webhook is None or webhook.deleted or delivery is None or delivery.status.finished:
            log.info("attempt of delivery %s not recorded: gone or finished", due.delivery_id)
            return None
        numbered = DeliveryAttempt(
            delivery.next_attempt_number,
            attempt.http_status,
            attempt.latency_ms,
            attempt.error,
            attempt.attempted_at,
        )
        delivery.record(numbered, max_attempts=policy.max_attempts, backoff=policy.backoff)
        if numbered.succeeded:
            webhook.attempt_succeeded()
        else:
            webhook.attempt_failed(
                error=numbered.error,
                cause_event_id=delivery.event_id,
                failing_after=policy.failing_after,
            )
        uow.webhooks.save(uow.track(webhook))
        uow.deliveries.save(uow.track(delivery))
        uow.commit()
    return numbered


def _status_error(status: int) -> str:
    if 200 <= status < 300:
        return ""
    if 300 <= status < 400:
        return f"HTTP {status} (redirects are not followed)"
    return f"HTTP {status}"
