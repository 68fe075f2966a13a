"""The notifier's entities: backoff schedule, delivery transitions, endpoint health, emails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventforge.notifier.domain.model import (
    Acceptance,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EmailSent,
    EndpointFailing,
    InvalidTransition,
    Notification,
    NotificationStatus,
    Webhook,
    WebhookDelivered,
    WebhookStatus,
)
from eventforge.notifier.domain.retry import Backoff

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NO_JITTER = Backoff(base_seconds=1, max_seconds=30, random=lambda: 1.0)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert Backoff().schedule(6) == [1, 2, 4, 8, 16]
    assert Backoff(base_seconds=1, max_seconds=10).schedule(7) == [1, 2, 4, 8, 10, 10]
    assert Backoff(base_seconds=0.05, max_seconds=1).ceiling(3) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="numbered from 1"):
        Backoff().ceiling(0)


def test_jitter_stays_between_half_and_the_ceiling_so_waits_still_grow() -> None:
    low = Backoff(base_seconds=2, random=lambda: 0.0)
    high = Backoff(base_seconds=2, random=lambda: 1.0)
    for attempt in range(1, 6):
        assert low.delay(attempt) == low.ceiling(attempt) / 2
        assert high.delay(attempt) == high.ceiling(attempt)
        assert low.delay(attempt + 1) >= high.delay(attempt)


def attempt(number: int, status: int, error: str = "", at: datetime = T0) -> DeliveryAttempt:
    return DeliveryAttempt(number, status, 12, error, at)


def delivery() -> Delivery:
    return Delivery("d-1", "w-1", "e-1", "order.confirmed", "{}", T0, next_attempt_at=T0)


def test_a_failed_attempt_schedules_a_retry_after_the_backoff() -> None:
    d = delivery()
    d.record(attempt(1, 500, "HTTP 500"), max_attempts=3, backoff=NO_JITTER)
    assert d.status is DeliveryStatus.RETRYING
    assert d.next_attempt_at == T0 + timedelta(seconds=1)
    d.record(
        attempt(2, 0, "timed out", T0 + timedelta(seconds=1)), max_attempts=3, backoff=NO_JITTER
    )
    assert d.next_attempt_at == T0 + timedelta(seconds=3)
    assert d.events == []


def test_attempts_run_out_into_failed() -> None:
    d = delivery()
    for number in (1, 2):
        d.record(attempt(number, 503, "HTTP 503"), max_attempts=2, backoff=NO_JITTER)
    assert (d.status, d.next_attempt_at, len(d.attempts)) == (DeliveryStatus.FAILED, None, 2)
    with pytest.raises(InvalidTransition):
        d.record(attempt(3, 200), max_attempts=2, backoff=NO_JITTER)


def test_success_finishes_the_delivery_once() -> None:
    d = delivery()
    d.record(attempt(1, 204), max_attempts=3, backoff=NO_JITTER)
    assert d.status is DeliveryStatus.SUCCEEDED
    assert d.events == [WebhookDelivered("d-1", "w-1", "e-1")]
    with pytest.raises(InvalidTransition):
        d.record(attempt(2, 200), max_attempts=3, backoff=NO_JITTER)


def test_a_2xx_with_an_error_is_not_a_success() -> None:
    assert attempt(1, 200).succeeded
    assert not attempt(1, 302, "HTTP 302").succeeded
    assert not attempt(1, 0, "refused").succeeded


def webhook() -> Webhook:
    return Webhook("w-1", "https://hooks.example.com/", ("order.confirmed",), "s", "", T0)


def test_an_endpoint_turns_failing_once_after_n_consecutive_failures() -> None:
    w = webhook()
    for _ in range(2):
        w.attempt_failed(error="HTTP 500", cause_event_id="e-1", failing_after=3)
    assert w.status is WebhookStatus.ACTIVE
    for _ in range(3):
        w.attempt_failed(error="HTTP 502", cause_event_id="e-2", failing_after=3)
    assert (w.status, w.consecutive_failures) == (WebhookStatus.FAILING, 5)
    assert w.events == [EndpointFailing("w-1", w.url, 3, "HTTP 502", "e-2")]


def test_a_success_resets_the_streak_and_a_new_streak_reports_again() -> None:
    w = webhook()
    for _ in range(2):
        w.attempt_failed(error="x", cause_event_id="e", failing_after=2)
    w.attempt_succeeded()
    assert (w.status, w.consecutive_failures, w.last_error) == (WebhookStatus.ACTIVE, 0, "")
    for _ in range(2):
        w.attempt_failed(error="y", cause_event_id="e", failing_after=2)
    assert len(w.events) == 2


def test_deleting_forgets_the_secret_and_is_idempotent() -> None:
    w = webhook()
    assert w.delete(T0)
    assert (w.deleted, w.secret) == (True, "")
    assert not w.delete(T0 + timedelta(seconds=1))
    assert w.deleted_at == T0


def email() -> Notification:
    return Notification("n-1", "e-1", "order.confirmed", "ada@example.com", "S", "t", "h", T0)


def test_an_email_is_marked_sent_once_and_a_second_acceptance_is_a_duplicate() -> None:
    n = email()
    n.claim(T0, lease=timedelta(minutes=2))
    assert n.accepted("ses-1", T0) is Acceptance.RECORDED
    assert n.accepted("ses-1", T0) is Acceptance.KNOWN
    assert n.accepted("ses-2", T0) is Acceptance.DUPLICATE
    assert (n.status, n.provider_message_id) == (NotificationStatus.SENT, "ses-1")
    assert n.events == [EmailSent("n-1", "ada@example.com", "e-1")]


def test_a_claim_is_an_attempt_under_a_lease() -> None:
    n = email()
    n.claim(T0, lease=timedelta(minutes=2))
    assert (n.status, n.attempts, n.outcome_unknown) == (NotificationStatus.SENDING, 1, True)
    assert n.next_attempt_at == T0 + timedelta(minutes=2)
    n.accepted("ses-1", T0)
    with pytest.raises(InvalidTransition):
        n.claim(T0, lease=timedelta(minutes=2))


def test_a_lost_answer_keeps_the_email_sending_for_one_more_lease() -> None:
    n = email()
    n.claim(T0, lease=timedelta(minutes=2))
    n.answer_lost("read timeout", T0 + timedelta(seconds=30), wait=timedelta(minutes=2))
    assert n.status is NotificationStatus.SENDING
    assert n.next_attempt_at == T0 + timedelta(seconds=150)
    assert n.last_error == "outcome unknown: read timeout"
    n.give_up_unknown(T0)
    assert n.status.finished
    assert "unknown" in n.last_error
    # The provider's word wins over our giving up: it was sent after all.
    assert n.accepted("ses-1", T0) is Acceptance.RECORDED
    assert n.status.value == "SENT"


def test_a_rejected_email_fails_with_the_reason() -> None:
    n = email()
    n.claim(T0, lease=timedelta(minutes=2))
    n.rejected("Bad content")
    assert (n.status, n.last_error) == (
        NotificationStatus.FAILED,
        "rejected by the provider: Bad content",
    )


def test_email_failures_retry_then_give_up() -> None:
    n = email()
    n.claim(T0 - timedelta(seconds=1), lease=timedelta(minutes=2))
    n.send_failed("throttled", T0, permanent=False, max_attempts=2, backoff=NO_JITTER)
    assert n.status is NotificationStatus.PENDING
    assert n.next_attempt_at == T0 + timedelta(seconds=1)
    n.claim(T0 + timedelta(seconds=1), lease=timedelta(minutes=2))
    n.send_failed("throttled", T0, permanent=False, max_attempts=2, backoff=NO_JITTER)
    assert n.status.value == "FAILED"
    rejected = email()
    rejected.claim(T0, lease=timedelta(minutes=2))
    rejected.send_failed("rejected", T0, permanent=True, max_attempts=5, backoff=NO_JITTER)
    assert rejected.status is NotificationStatus.FAILED
