"""The dispatcher: claims due webhook deliveries and emails and works them off in a bounded pool.

Each delivery is independent: its own claim, attempt and record. A slow or failing endpoint
holds at most `per_endpoint` threads of the pool; every other endpoint's deliveries keep going.

Every attempt counts once in `eventforge.notifier.deliveries`, by channel, attempt number and
outcome: for an email `succeeded` (SENT), `refused` (retried later), `failed` (given up),
`unknown` (its answer was lost: SES's event settles it), `gone` (deleted meanwhile); for a
webhook `succeeded` (a 2xx), `failed` (retried until its attempts run out), `gone` (the delivery
or its endpoint was gone or finished); `error` when recording it raised.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from eventforge.notifier.domain.model import DeliveryAttempt, NotificationStatus
from eventforge.notifier.service_layer.deliveries import (
    DeliveryPolicy,
    attempt_delivery,
    claim_deliveries,
)
from eventforge.notifier.service_layer.notifications import EmailPolicy, claim_emails, send_email
from eventforge.notifier.service_layer.ports import Mailer, Resolver, WebhookTransport
from eventforge.notifier.service_layer.unit_of_work import UnitOfWork
from eventforge.runtime.metrics import Metrics, process_metrics

log = logging.getLogger("eventforge.notifier.dispatcher")

PER_ENDPOINT = 2
"""Attempts in flight to one endpoint at once (per dispatcher)."""

EMAIL_OUTCOMES = {
    NotificationStatus.SENT: "succeeded",
    NotificationStatus.PENDING: "refused",
    NotificationStatus.FAILED: "failed",
    NotificationStatus.SENDING: "unknown",
}


class Dispatcher:
    """Call `run_once` periodically (it never blocks on an attempt); `shutdown` at the end."""

    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        transport: WebhookTransport,
        resolver: Resolver,
        mailer: Mailer,
        policy: DeliveryPolicy,
        email_policy: EmailPolicy,
        concurrency: int,
        per_endpoint: int = PER_ENDPOINT,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or process_metrics()
        self.uow = uow
        self.transport = transport
        self.resolver = resolver
        self.mailer = mailer
        self.policy = policy
        self.email_policy = email_policy
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dispatch")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._claiming = threading.Lock()
        self._look_again = False
        self._saturated = False
        """The last claim filled every free thread: more is probably due."""
        self._busy: Counter[str] = Counter()
        self._closed = False

    def run_once(self) -> int:
        """Claim what is due and fits in the pool, and start it; how many were started.

        Never claims twice at once: a call made while another claims asks that one to look
        again, and returns 0 (`wait_idle` waits for that claim too). While the pool is full,
        finished attempts call it (from the pool's threads) once half the pool is free, so a
        backlog is worked off as fast as attempts finish rather than one pool's worth per
        periodic run.
        """
        if not self._claiming.acquire(blocking=False):
            self._look_again = True
            return 0
        started = 0
        try:
            while True:
                self._look_again = False
                started += self._claim_and_start()
                if not self._look_again:
                    return started
        finally:
            with self._lock:
                self._claiming.release()
                self._idle.notify_all()

    def _claim_and_start(self) -> int:
        with self._lock:
            if self._closed:
                return 0
            free, busy = self.concurrency - self._in_flight, dict(self._busy)
        # Emails get up to half of the free threads first, so a webhook backlog cannot starve
        # them; webhooks get the rest, and emails what webhooks leave.
        emails = claim_emails(uow=self.uow(), limit=(free + 1) // 2, policy=self.email_policy)
        deliveries = claim_deliveries(
            uow=self.uow(),
            limit=free - len(emails),
            busy=busy,
            per_endpoint=self.per_endpoint,
            lease=self.policy.lease,
        )
        left = free - len(emails) - len(deliveries)
        if left > 0 and len(emails) == (free + 1) // 2:
            emails += claim_emails(uow=self.uow(), limit=left, policy=self.email_policy)
        with self._lock:
            self._saturated = free > 0 and len(emails) + len(deliveries) == free
        for notification in emails:
            self._start(
                "",
                partial(
                    send_email,
                    notification,
                    uow=self.uow(),
                    mailer=self.mailer,
                    policy=self.email_policy,
                ),
                partial(self._email_done, notification.attempts),
            )
        for due in deliveries:
            self._start(
                due.webhook_id,
                partial(
                    attempt_delivery,
                    due,
                    uow=self.uow(),
                    transport=self.transport,
                    resolver=self.resolver,
                    policy=self.policy,
                ),
                partial(self._webhook_done, due.attempt_number),
            )
        return len(deliveries) + len(emails)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no attempt is in flight and no claim is running (at most `timeout` s);
        whether it is idle."""
        with self._idle:
            return self._idle.wait_for(
                lambda: self._in_flight == 0 and not self._claiming.locked(), timeout
            )

    def shutdown(self, wait: bool = True) -> None:
        """Claim nothing more; let the attempts in flight finish (and be recorded) when `wait`."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=wait)

    def _start(
        self,
        endpoint: str,
        work: Callable[[], object],
        measure: Callable[[Future[object]], None],
    ) -> None:
        with self._lock:
            self._in_flight += 1
            if endpoint:
                self._busy[endpoint] += 1
        future = self._pool.submit(work)
        future.add_done_callback(lambda done: self._finished(endpoint, done, measure))

    def _email_done(self, attempt: int, done: Future[object]) -> None:
        if done.exception() is not None:
            outcome = "error"
        else:
            status = done.result()
            if isinstance(status, NotificationStatus):
                outcome = EMAIL_OUTCOMES.get(status, "unknown")
            else:
                outcome = "gone"
        self.metrics.delivery("email", outcome, attempt)

    def _webhook_done(self, attempt: int, done: Future[object]) -> None:
        error = done.exception()
        recorded = None if error is not None else done.result()
        if error is not None:
            outcome = "error"
        elif isinstance(recorded, DeliveryAttempt):
            outcome, attempt = ("succeeded" if recorded.succeeded else "failed"), recorded.number
        else:
            outcome = "gone"
        self.metrics.delivery("webhook", outcome, attempt)

    def _finished(
        self, endpoint: str, done: Future[object], measure: Callable[[Future[object]], None]
    ) -> None:
        with self._lock:
            self._in_flight -= 1
            if endpoint:
                self._busy[endpoint] -= 1
                if self._busy[endpoint] <= 0:
                    del self._busy[endpoint]
            # Claim again once half the pool is free: each claim is a transaction, so one
            # per finished attempt would cost more than the attempts themselves.
            half_free = self._in_flight <= self.concurrency // 2
            claim_more = self._saturated and half_free and not self._closed
        try:
            measure(done)
        except Exception:  # a metric must never break the dispatcher
            log.exception("recording a delivery's metrics failed")
        if claim_more:
            try:
                self.run_once()
            except Exception:  # the periodic run claims it then
                log.exception("claiming after a finished attempt failed")
        with self._lock:
            # Only now: whoever waits for idle sees what that claim started.
            self._idle.notify_all()
        error = done.exception()
        if error is not None:
            # Its lease runs out and it is claimed again; the failure itself must be seen.
            log.error("dispatch failed: %r", error, exc_info=error)
