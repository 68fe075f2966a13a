"""The dispatcher's pool: a slow endpoint never holds up the others."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta

from eventforge.notifier.domain.model import DeliveryStatus, NotificationStatus
from eventforge.notifier.domain.retry import Backoff
from eventforge.notifier.service_layer import webhooks
from eventforge.notifier.service_layer.deliveries import DeliveryPolicy
from eventforge.notifier.service_layer.dispatcher import Dispatcher
from eventforge.notifier.service_layer.notifications import EmailPolicy
from tests.notifier.fakes import FakeMailer, FakeResolver, FakeTransport, FakeUnitOfWork
from tests.notifier.test_handlers import PUBLIC, confirmed, run_fan_out

POLICY = DeliveryPolicy(
    max_attempts=3,
    failing_after=2,
    backoff=Backoff(base_seconds=0.01, max_seconds=0.02),
    allowed_hosts=frozenset(),
    lease=timedelta(seconds=30),
)


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_slow_endpoint_holds_a_bounded_share_of_the_pool() -> None:
    uow, mailer = FakeUnitOfWork(), FakeMailer()
    transport = FakeTransport(delays={"other.example.com": 0.5})
    resolver = FakeResolver(PUBLIC)
    for url in ("https://hooks.example.com/in", "https://other.example.com/in"):
        webhooks.register_webhook(
            command=webhooks.RegisterWebhook(url, ("order.confirmed",), ""),
            uow=uow,
            resolver=resolver,
            allowed_hosts=frozenset(),
        )
    for n in range(6):
        run_fan_out(uow, confirmed(f"c{n}@example.com"))
    dispatcher = Dispatcher(
        uow=uow,
        transport=transport,
        resolver=resolver,
        mailer=mailer,
        policy=POLICY,
        email_policy=EmailPolicy(),
        concurrency=4,
        per_endpoint=2,
    )
    started = time.monotonic()
    try:
        while len(transport.to("hooks.example.com")) < 6 or len(mailer.sent) < 6:
            dispatcher.run_once()
            assert time.monotonic() - started < 0.45, "the fast endpoint waited for the slow one"
            time.sleep(0.01)
    finally:
        dispatcher.shutdown()
    assert len(transport.to("other.example.com")) <= 4  # never more than 2 at a time
    fast = [d for d in uow.deliveries.rows.values() if d.status is DeliveryStatus.SUCCEEDED]
    assert len(fast) >= 6
    assert all(n.status is NotificationStatus.SENT for n in uow.notifications.rows.values())


def test_retries_follow_the_backoff_until_the_delivery_fails() -> None:
    uow = FakeUnitOfWork()
    transport = FakeTransport(statuses={"hooks.example.com": 503})
    resolver = FakeResolver(PUBLIC)
    webhooks.register_webhook(
        command=webhooks.RegisterWebhook("https://hooks.example.com/", ("order.confirmed",), ""),
        uow=uow,
        resolver=resolver,
        allowed_hosts=frozenset(),
    )
    run_fan_out(uow, confirmed())
    dispatcher = Dispatcher(
        uow=uow,
        transport=transport,
        resolver=resolver,
        mailer=FakeMailer(),
        policy=POLICY,
        email_policy=EmailPolicy(),
        concurrency=2,
    )
    try:

        def finished() -> bool:
            dispatcher.run_once()
            return all(d.status.finished for d in uow.deliveries.rows.values())

        eventually(finished)
    finally:
        dispatcher.shutdown()
    times = [s.at for s in transport.sent]
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.005
    assert gaps[1] >= 0.01


def test_a_backlog_of_emails_is_worked_off_from_one_run_using_every_thread() -> None:
    uow, mailer = FakeUnitOfWork(), FakeMailer()
    for n in range(20):
        run_fan_out(uow, confirmed(f"c{n}@example.com"))
    dispatcher = Dispatcher(
        uow=uow,
        transport=FakeTransport(),
        resolver=FakeResolver(PUBLIC),
        mailer=mailer,
        policy=POLICY,
        email_policy=EmailPolicy(),
        concurrency=4,
    )
    try:
        # No webhook is due: emails take every free thread (4), not only their guaranteed half;
        # attempts finishing meanwhile have it look again, so it may start more.
        assert dispatcher.run_once() >= 4
        # Each finished email claims the next while the pool is full: no further runs needed.
        eventually(lambda: len(mailer.sent) == 20)
    finally:
        dispatcher.shutdown()
    assert all(n.status is NotificationStatus.SENT for n in uow.notifications.rows.values())
    assert dispatcher.run_once() == 0
