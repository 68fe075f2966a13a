"""Notifier use cases against in-memory fakes: registration, fan-out, deliveries and emails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import exc as sa_exc

from eventforge.common.v1.money_pb2 import LineItem, Money
from eventforge.events.v1 import events_pb2
from eventforge.events.v1.events_pb2 import Envelope
from eventforge.notifier.adapters.templates import JinjaEmailRenderer
from eventforge.notifier.domain.model import (
    Acceptance,
    DeliveryStatus,
    NotificationStatus,
    Webhook,
    WebhookStatus,
)
from eventforge.notifier.domain.retry import Backoff
from eventforge.notifier.service_layer import webhooks
from eventforge.notifier.service_layer.deliveries import (
    DeliveryPolicy,
    attempt_delivery,
    claim_deliveries,
)
from eventforge.notifier.service_layer.fan_out import fan_out
from eventforge.notifier.service_layer.notifications import (
    EmailPolicy,
    claim_emails,
    list_notifications,
    record_provider_event,
    send_email,
)
from eventforge.notifier.service_layer.ports import (
    NOTIFICATION_TAG,
    FilesUnavailable,
    MailError,
    MailOutcomeUnknown,
    TransportError,
)
from eventforge.notifier.service_layer.retention import purge_history
from eventforge.notifier.signing import verify
from eventforge.runtime.errors import InvalidArgument, NotFound
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.messages import SesEvent
from tests.notifier.fakes import (
    FakeFiles,
    FakeMailer,
    FakeResolver,
    FakeTransport,
    FakeUnitOfWork,
)

PUBLIC = {"hooks.example.com": ["93.184.216.34"], "other.example.com": ["93.184.216.35"]}
RENDERER = JinjaEmailRenderer()


def policy(**overrides: object) -> DeliveryPolicy:
    fields: dict[str, object] = {
        "max_attempts": 4,
        "failing_after": 3,
        "backoff": Backoff(base_seconds=0.0001, max_seconds=0.001),
        "allowed_hosts": frozenset(),
        "lease": timedelta(seconds=30),
    }
    fields.update(overrides)
    return DeliveryPolicy(**fields)  # type: ignore[arg-type]


def register(
    uow: FakeUnitOfWork,
    url: str = "https://hooks.example.com/in",
    types: tuple[str, ...] = ("order.confirmed",),
    resolver: FakeResolver | None = None,
) -> Webhook:
    return webhooks.register_webhook(
        command=webhooks.RegisterWebhook(url, types, "test endpoint"),
        uow=uow,
        resolver=resolver or FakeResolver(PUBLIC),
        allowed_hosts=frozenset(),
    )


def violations(
    url: str, resolver: FakeResolver, types: tuple[str, ...] = ("order.failed",)
) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        webhooks.register_webhook(
            command=webhooks.RegisterWebhook(url, types, ""),
            uow=FakeUnitOfWork(),
            resolver=resolver,
            allowed_hosts=frozenset(),
        )
    return {v.field: v.description for v in raised.value.violations}


def confirmed(email: str = "ada@example.com") -> Envelope:
    total = Money(amount_minor=5000, currency="USD")
    payload = events_pb2.OrderConfirmed(
        order_id="o-1",
        customer_email=email,
        items=[LineItem(sku="SKU-BOOK-001", quantity=2, line_total=total)],
        total=total,
    )
    return new_envelope(payload, source="orders", subject="o-1")


def run_fan_out(uow: FakeUnitOfWork, envelope: Envelope, files: FakeFiles | None = None) -> None:
    fan_out(envelope=envelope, uow=uow, files=files or FakeFiles(), renderer=RENDERER)


def deliver_due(
    uow: FakeUnitOfWork, transport: FakeTransport, resolver: FakeResolver, **kw: object
) -> int:
    """Claim everything due and attempt it (sequentially); how many attempts were made."""
    due = claim_deliveries(uow=uow, limit=50, busy={}, per_endpoint=50, lease=timedelta(seconds=30))
    for claim in due:
        attempt_delivery(
            claim, uow=uow, transport=transport, resolver=resolver, policy=policy(**kw)
        )
    return len(due)


def make_due(uow: FakeUnitOfWork) -> None:
    """Bring every retry forward to now (instead of sleeping through the backoff)."""
    for row in uow.deliveries.rows.values():
        if row.status is DeliveryStatus.RETRYING:
            row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)


# Registration ------------------------------------------------------------------------------


def test_registration_returns_the_endpoint_and_a_secret() -> None:
    uow = FakeUnitOfWork()
    webhook = register(uow, types=("order.failed", "order.confirmed"))
    assert webhook.secret.startswith("whsec_")
    assert len(webhook.secret) >= 6 + 43
    assert webhook.event_types == ("order.confirmed", "order.failed")
    assert webhook.status is WebhookStatus.ACTIVE
    assert uow.webhooks.rows[webhook.webhook_id].secret == webhook.secret
    assert register(uow).secret != webhook.secret


@pytest.mark.parametrize(
    ("url", "answers", "fragment"),
    [
        ("https://10.0.0.1/hook", {}, "10.0.0.1 is a private address"),
        ("https://127.0.0.1/hook", {}, "loopback"),
        ("http://127.0.0.1:8080/hook", {}, "https"),
        ("https://169.254.169.254/latest/meta-data/", {}, "metadata"),
        ("https://[::1]/hook", {}, "loopback"),
        ("https://[::ffff:10.0.0.1]/hook", {}, "private"),
        ("https://100.64.1.1/hook", {}, "carrier-grade NAT"),
        ("https://localhost/hook", {"localhost": ["127.0.0.1", "::1"]}, "resolves to 127.0.0.1"),
        ("https://intranet.example/x", {"intranet.example": ["192.168.0.5"]}, "private"),
        # One private answer among public ones is enough to refuse.
        ("https://mixed.example/x", {"mixed.example": ["93.184.216.34", "10.1.2.3"]}, "10.1.2.3"),
        ("https://nowhere.example/x", {}, "does not resolve"),
    ],
)
@pytest.mark.security
def test_registration_refuses_unsafe_targets_on_the_url_field(
    url: str, answers: dict[str, list[str]], fragment: str
) -> None:
    found = violations(url, FakeResolver(answers))
    assert fragment in found["url"]


def test_registration_checks_event_types_and_description() -> None:
    resolver = FakeResolver(PUBLIC)
    assert (
        "at least one"
        in violations("https://hooks.example.com/", resolver, types=())["event_types"]
    )
    bad = violations(
        "https://hooks.example.com/", resolver, types=("order.shipped", "order.placed")
    )
    assert "not an event type of the catalog" in bad["event_types[0]"]
    assert "not delivered to webhooks" in bad["event_types[1]"]
    with pytest.raises(InvalidArgument) as raised:
        webhooks.register_webhook(
            command=webhooks.RegisterWebhook(
                "https://hooks.example.com/", ("order.failed",), "x" * 501
            ),
            uow=FakeUnitOfWork(),
            resolver=resolver,
            allowed_hosts=frozenset(),
        )
    assert raised.value.violations[0].field == "description"


def test_registration_refuses_repeated_event_types_once_per_repetition() -> None:
    bad = violations(
        "https://hooks.example.com/",
        FakeResolver(PUBLIC),
        types=("order.failed", "order.shipped", "order.failed", "order.shipped", "order.failed"),
    )
    assert bad == {
        "event_types[1]": "'order.shipped' is not an event type of the catalog",
        "event_types[2]": "appears twice",
        "event_types[3]": "appears twice",
        "event_types[4]": "appears twice",
    }


def test_the_allow_list_admits_http_and_loopback_for_its_hosts_only() -> None:
    uow = FakeUnitOfWork()
    webhook = webhooks.register_webhook(
        command=webhooks.RegisterWebhook("http://127.0.0.1:9000/in", ("order.failed",), ""),
        uow=uow,
        resolver=FakeResolver(),
        allowed_hosts=frozenset({"127.0.0.1"}),
    )
    assert webhook.url == "http://127.0.0.1:9000/in"
    with pytest.raises(InvalidArgument):
        webhooks.register_webhook(
            command=webhooks.RegisterWebhook("http://10.0.0.1/in", ("order.failed",), ""),
            uow=uow,
            resolver=FakeResolver(),
            allowed_hosts=frozenset({"127.0.0.1"}),
        )


def test_list_pages_oldest_first_without_deleted_endpoints() -> None:
    uow = FakeUnitOfWork()
    made = [register(uow).webhook_id for _ in range(5)]
    webhooks.delete_webhook(webhook_id=made[1], uow=uow)
    first, token = webhooks.list_webhooks(page_size=2, page_token="", uow=uow)
    second, end = webhooks.list_webhooks(page_size=2, page_token=token, uow=uow)
    assert [w.webhook_id for w in first + second] == [made[0], made[2], made[3], made[4]]
    assert end == ""
    with pytest.raises(InvalidArgument):
        webhooks.list_webhooks(page_size=101, page_token="garbage!", uow=uow)


def test_delete_drops_pending_deliveries_keeps_history_and_is_idempotent() -> None:
    uow, transport, resolver = FakeUnitOfWork(), FakeTransport(), FakeResolver(PUBLIC)
    webhook = register(uow)
    run_fan_out(uow, confirmed())
    deliver_due(uow, transport, resolver)
    run_fan_out(uow, confirmed("bob@example.com"))
    assert webhooks.delete_webhook(webhook_id=webhook.webhook_id, uow=uow) == 1
    assert webhooks.delete_webhook(webhook_id=webhook.webhook_id, uow=uow) == 0
    [kept] = uow.deliveries.rows.values()
    assert kept.status is DeliveryStatus.SUCCEEDED
    assert uow.webhooks.rows[webhook.webhook_id].secret == ""
    run_fan_out(uow, confirmed("eve@example.com"))
    assert len(uow.deliveries.rows) == 1
    with pytest.raises(NotFound):
        webhooks.delete_webhook(webhook_id="00000000-0000-0000-0000-000000000000", uow=uow)
    with pytest.raises(InvalidArgument):
        webhooks.delete_webhook(webhook_id="nope", uow=uow)


# Fan-out -----------------------------------------------------------------------------------


def test_duplicate_events_make_one_delivery_per_endpoint_and_one_email_per_recipient() -> None:
    uow = FakeUnitOfWork()
    a, b = register(uow), register(uow, "https://other.example.com/in")
    register(uow, types=("order.failed",))
    envelope = confirmed()
    for _ in range(3):
        run_fan_out(uow, envelope)
    assert sorted(d.webhook_id for d in uow.deliveries.rows.values()) == sorted(
        [a.webhook_id, b.webhook_id]
    )
    assert all(d.body == encode(envelope) for d in uow.deliveries.rows.values())
    [email] = uow.notifications.rows.values()
    assert (email.recipient, email.status) == ("ada@example.com", NotificationStatus.PENDING)
    assert "o-1" in email.subject
    assert "50.00 USD" in email.text_body
    assert "50.00 USD" in email.html_body


@pytest.mark.parametrize(
    ("payload", "recipient", "text"),
    [
        (
            events_pb2.OrderFailed(
                order_id="o-2", customer_email="Ada@Example.com", reason="card declined"
            ),
            "ada@example.com",
            "card declined",
        ),
        (
            events_pb2.OrderCancelled(
                order_id="o-3", customer_email="ada@example.com", reason="changed my mind"
            ),
            "ada@example.com",
            "changed my mind",
        ),
        (
            events_pb2.FileRejected(
                file_id="f-1",
                file_name="cat.exe",
                reason="not an image",
                notify_email="u@example.com",
            ),
            "u@example.com",
            "not an image",
        ),
    ],
)
def test_emails_carry_what_the_event_says(
    payload: events_pb2.OrderFailed, recipient: str, text: str
) -> None:
    uow = FakeUnitOfWork()
    run_fan_out(uow, new_envelope(payload, source="orders", subject="x"))
    [email] = uow.notifications.rows.values()
    assert email.recipient == recipient
    assert text in email.text_body
    assert text in email.html_body


def test_events_for_operators_or_webhooks_only_send_no_email() -> None:
    uow = FakeUnitOfWork()
    for payload in (
        events_pb2.OrderCompensationFailed(order_id="o-1", compensation="refund_payment"),
        events_pb2.FileProcessed(file_id="f-1", notify_email="u@example.com"),
        events_pb2.FileRejected(file_id="f-2", reason="bad"),
    ):
        run_fan_out(uow, new_envelope(payload, source="files", subject="x"))
    assert uow.notifications.rows == {}


def test_receipt_email_links_the_file_and_html_is_escaped() -> None:
    uow, files = FakeUnitOfWork(), FakeFiles()
    payload = events_pb2.ReceiptReady(
        order_id="<o-9>",
        file_id="f-9",
        customer_email="ada@example.com",
        total=Money(amount_minor=1299, currency="USD"),
    )
    run_fan_out(uow, new_envelope(payload, source="files", subject="f-9"), files)
    [email] = uow.notifications.rows.values()
    assert files.asked == ["f-9"]
    assert "https://files.example/f-9?signature=abc" in email.text_body
    assert 'href="https://files.example/f-9?signature=abc"' in email.html_body
    assert "&lt;o-9&gt;" in email.html_body
    assert "<o-9>" in email.text_body


def test_receipt_ready_is_retried_while_files_is_down() -> None:
    uow = FakeUnitOfWork()
    register(uow, types=("receipt.ready",))
    payload = events_pb2.ReceiptReady(order_id="o", file_id="f", customer_email="ada@example.com")
    with pytest.raises(FilesUnavailable):
        run_fan_out(uow, new_envelope(payload, source="files", subject="f"), FakeFiles(down=True))
    assert uow.deliveries.rows == {}
    assert uow.notifications.rows == {}


# Deliveries --------------------------------------------------------------------------------


def test_a_delivery_is_signed_pinned_and_recorded() -> None:
    uow, transport, resolver = FakeUnitOfWork(), FakeTransport(), FakeResolver(PUBLIC)
    webhook = register(uow)
    envelope = confirmed()
    run_fan_out(uow, envelope)
    assert deliver_due(uow, transport, resolver) == 1
    [sent] = transport.sent
    assert sent.target.address == "93.184.216.34"
    assert sent.target.host == "hooks.example.com"
    headers = sent.headers
    assert headers["EventForge-Event-Id"] == envelope.event_id
    assert headers["EventForge-Event-Type"] == "order.confirmed"
    assert sent.body == encode(envelope).encode()
    assert verify(
        webhook.secret, headers["EventForge-Timestamp"], sent.body, headers["EventForge-Signature"]
    )
    [delivery] = uow.deliveries.rows.values()
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert [(a.number, a.http_status, a.error) for a in delivery.attempts] == [(1, 200, "")]
    assert uow.types() == ["NotificationSent"]
    assert deliver_due(uow, transport, resolver) == 0


def test_a_failing_endpoint_turns_failing_once_while_a_healthy_one_gets_one_delivery() -> None:
    uow, resolver = FakeUnitOfWork(), FakeResolver(PUBLIC)
    transport = FakeTransport(statuses={"other.example.com": 500})
    healthy, failing = register(uow), register(uow, "https://other.example.com/in")
    run_fan_out(uow, confirmed())
    for _ in range(6):
        deliver_due(uow, transport, resolver)
        make_due(uow)
    assert len(transport.to("hooks.example.com")) == 1
    assert len(transport.to("other.example.com")) == 4  # max_attempts
    stored = uow.webhooks.rows[failing.webhook_id]
    assert (stored.status, stored.consecutive_failures) == (WebhookStatus.FAILING, 4)
    assert uow.webhooks.rows[healthy.webhook_id].status is WebhookStatus.ACTIVE
    failed = [m for m in uow.published if isinstance(m, events_pb2.NotificationFailed)]
    assert len(failed) == 1
    assert (failed[0].webhook_id, failed[0].consecutive_failures) == (failing.webhook_id, 3)
    assert failed[0].last_error == "HTTP 500"
    [bad] = [d for d in uow.deliveries.rows.values() if d.webhook_id == failing.webhook_id]
    assert bad.status is DeliveryStatus.FAILED
    assert [a.number for a in bad.attempts] == [1, 2, 3, 4]
    assert [a.http_status for a in bad.attempts] == [500] * 4


def test_a_success_marks_a_failing_endpoint_active_again() -> None:
    uow, resolver = FakeUnitOfWork(), FakeResolver(PUBLIC)
    transport = FakeTransport(statuses={"hooks.example.com": TransportError("connection refused")})
    webhook = register(uow)
    run_fan_out(uow, confirmed())
    for _ in range(3):
        deliver_due(uow, transport, resolver)
        make_due(uow)
    assert uow.webhooks.rows[webhook.webhook_id].status is WebhookStatus.FAILING
    assert (
        uow.deliveries.rows[next(iter(uow.deliveries.rows))].attempts[0].error
        == "connection refused"
    )
    transport.statuses.clear()
    deliver_due(uow, transport, resolver)
    stored = uow.webhooks.rows[webhook.webhook_id]
    assert (stored.status, stored.consecutive_failures) == (WebhookStatus.ACTIVE, 0)


def test_dns_rebinding_after_registration_is_a_failed_attempt_with_the_reason() -> None:
    uow, transport, resolver = FakeUnitOfWork(), FakeTransport(), FakeResolver(PUBLIC)
    register(uow)
    run_fan_out(uow, confirmed())
    resolver.answers["hooks.example.com"] = ["169.254.169.254"]
    deliver_due(uow, transport, resolver)
    assert transport.sent == []
    [delivery] = uow.deliveries.rows.values()
    [attempt] = delivery.attempts
    assert attempt.http_status == 0
    assert "refused: host hooks.example.com resolves to 169.254.169.254" in attempt.error
    assert delivery.status is DeliveryStatus.RETRYING


def test_redirects_are_failures() -> None:
    uow, resolver = FakeUnitOfWork(), FakeResolver(PUBLIC)
    register(uow)
    run_fan_out(uow, confirmed())
    deliver_due(uow, FakeTransport(statuses={"hooks.example.com": 302}), resolver)
    [delivery] = uow.deliveries.rows.values()
    assert "redirects are not followed" in delivery.attempts[0].error


def test_claims_respect_the_per_endpoint_limit_and_lease() -> None:
    uow = FakeUnitOfWork()
    register(uow)
    for n in range(5):
        run_fan_out(uow, confirmed(f"c{n}@example.com"))
    lease = timedelta(seconds=30)
    first = claim_deliveries(uow=uow, limit=10, busy={}, per_endpoint=2, lease=lease)
    assert len(first) == 2
    webhook_id = first[0].webhook_id
    assert (
        claim_deliveries(uow=uow, limit=10, busy={webhook_id: 2}, per_endpoint=2, lease=lease) == []
    )
    again = claim_deliveries(uow=uow, limit=10, busy={}, per_endpoint=10, lease=lease)
    assert {d.delivery_id for d in again}.isdisjoint({d.delivery_id for d in first})
    assert len(again) == 3


# Emails ------------------------------------------------------------------------------------


def test_pending_emails_are_sent_once_and_announced() -> None:
    uow, mailer, envelope = FakeUnitOfWork(), FakeMailer(), confirmed()
    run_fan_out(uow, envelope)
    run_fan_out(uow, envelope)
    email_policy = EmailPolicy()
    for notification in claim_emails(uow=uow, limit=10, policy=email_policy):
        assert (
            send_email(notification, uow=uow, mailer=mailer, policy=email_policy)
            is NotificationStatus.SENT
        )
    assert claim_emails(uow=uow, limit=10, policy=email_policy) == []
    [sent] = mailer.sent
    assert sent["recipient"] == "ada@example.com"
    [stored] = uow.notifications.rows.values()
    assert (stored.status, stored.provider_message_id, stored.attempts) == (
        NotificationStatus.SENT,
        "msg-1",
        1,
    )
    announced = [m for m in uow.published if isinstance(m, events_pb2.NotificationSent)]
    assert [(m.channel, m.recipient) for m in announced] == [("email", "ada@example.com")]
    found, _ = list_notifications(
        event_id=stored.event_id, recipient="", page_size=0, page_token="", uow=uow
    )
    assert [n.notification_id for n in found] == [stored.notification_id]


def test_refused_emails_fail_and_throttled_ones_wait() -> None:
    uow = FakeUnitOfWork()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy(backoff=Backoff(base_seconds=60))
    [n] = claim_emails(uow=uow, limit=10, policy=email_policy)
    send_email(n, uow=uow, mailer=FakeMailer(MailError("Throttling")), policy=email_policy)
    assert claim_emails(uow=uow, limit=10, policy=email_policy) == []  # backing off
    [stored] = uow.notifications.rows.values()
    assert (stored.status, stored.last_error) == (NotificationStatus.PENDING, "Throttling")
    stored.next_attempt_at = datetime.now(UTC)
    [n] = claim_emails(uow=uow, limit=10, policy=email_policy)
    refused = MailError("MessageRejected", permanent=True)
    assert (
        send_email(n, uow=uow, mailer=FakeMailer(refused), policy=email_policy)
        is NotificationStatus.FAILED
    )


def ses_event(
    notification_id: str | None, message_id: str, event_type: str = "Send", **detail: object
) -> SesEvent:
    tags = {"ses:configuration-set": ("eventforge-email",)}
    if notification_id is not None:
        tags[NOTIFICATION_TAG] = (notification_id,)
    return SesEvent(event_type=event_type, message_id=message_id, tags=tags, detail=detail)


def crashed_after_send(uow: FakeUnitOfWork, mailer: FakeMailer, email_policy: EmailPolicy) -> str:
    """Claim the email and have the provider accept it, then record nothing (a kill -9)."""
    [n] = claim_emails(uow=uow, limit=10, policy=email_policy)
    return mailer.send(
        notification_id=n.notification_id,
        recipient=n.recipient,
        subject=n.subject,
        text=n.text_body,
        html=n.html_body,
    )


def later(delta: timedelta) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + delta


def test_the_send_event_records_an_email_whose_sender_died_and_it_is_not_sent_again() -> None:
    uow, mailer = FakeUnitOfWork(), FakeMailer()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy(lease=timedelta(minutes=2))
    message_id = crashed_after_send(uow, mailer, email_policy)
    [stored] = uow.notifications.rows.values()
    assert stored.status is NotificationStatus.SENDING
    assert mailer.sent[0]["notification_id"] == stored.notification_id
    # The provider's Send event arrives on the email queue.
    recorded = record_provider_event(ses_event(stored.notification_id, message_id), uow=uow)
    assert recorded is Acceptance.RECORDED
    [stored] = uow.notifications.rows.values()
    assert (stored.status, stored.provider_message_id) == (NotificationStatus.SENT, message_id)
    assert claim_emails(uow=uow, limit=10, policy=email_policy, now=later(timedelta(hours=1))) == []
    assert len(mailer.sent) == 1
    announced = [m for m in uow.published if isinstance(m, events_pb2.NotificationSent)]
    assert len(announced) == 1


def test_without_a_send_event_the_email_is_sent_again_after_its_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    uow, mailer = FakeUnitOfWork(), FakeMailer()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy(lease=timedelta(minutes=2))
    [n] = claim_emails(uow=uow, limit=10, policy=email_policy)  # and then the sender died
    assert (
        claim_emails(uow=uow, limit=10, policy=email_policy, now=later(timedelta(minutes=1))) == []
    )
    with caplog.at_level("WARNING", logger="eventforge.notifier.emails"):
        [again] = claim_emails(
            uow=uow, limit=10, policy=email_policy, now=later(timedelta(minutes=3))
        )
    assert (again.notification_id, again.attempts) == (n.notification_id, 2)
    assert [r.__dict__.get("email_outcome") for r in caplog.records] == ["resent"]
    assert send_email(again, uow=uow, mailer=mailer, policy=email_policy) is NotificationStatus.SENT


def test_a_lost_answer_waits_for_the_event_instead_of_sending_again() -> None:
    uow = FakeUnitOfWork()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy(lease=timedelta(minutes=2))
    [n] = claim_emails(uow=uow, limit=10, policy=email_policy)
    lost = FakeMailer(MailOutcomeUnknown("SES gave no answer: read timeout"))
    assert send_email(n, uow=uow, mailer=lost, policy=email_policy) is NotificationStatus.SENDING
    [stored] = uow.notifications.rows.values()
    assert stored.last_error == "outcome unknown: SES gave no answer: read timeout"
    assert (
        claim_emails(uow=uow, limit=10, policy=email_policy, now=later(timedelta(minutes=1))) == []
    )
    assert record_provider_event(ses_event(n.notification_id, "ses-1"), uow=uow) is (
        Acceptance.RECORDED
    )
    assert claim_emails(uow=uow, limit=10, policy=email_policy, now=later(timedelta(hours=1))) == []


def test_an_unknown_outcome_on_the_last_attempt_fails_visibly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    uow = FakeUnitOfWork()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy(max_attempts=1, lease=timedelta(minutes=2))
    claim_emails(uow=uow, limit=10, policy=email_policy)  # and then the sender died
    with caplog.at_level("ERROR", logger="eventforge.notifier.emails"):
        assert (
            claim_emails(uow=uow, limit=10, policy=email_policy, now=later(timedelta(minutes=3)))
            == []
        )
    [stored] = uow.notifications.rows.values()
    assert stored.status is NotificationStatus.FAILED
    assert "unknown" in stored.last_error
    assert [r.__dict__.get("email_outcome") for r in caplog.records] == ["abandoned"]


def test_provider_events_after_the_answer_change_nothing_but_a_second_send_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    uow, mailer = FakeUnitOfWork(), FakeMailer()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy()
    [n] = claim_emails(uow=uow, limit=10, policy=email_policy)
    send_email(n, uow=uow, mailer=mailer, policy=email_policy)
    assert record_provider_event(ses_event(n.notification_id, "msg-1"), uow=uow) is (
        Acceptance.KNOWN
    )
    delivered = ses_event(n.notification_id, "msg-1", "Delivery")
    assert record_provider_event(delivered, uow=uow) is Acceptance.KNOWN
    with caplog.at_level("ERROR", logger="eventforge.notifier.emails"):
        again = record_provider_event(ses_event(n.notification_id, "msg-2"), uow=uow)
    assert again is Acceptance.DUPLICATE
    assert [r.__dict__.get("email_outcome") for r in caplog.records] == ["duplicate"]
    [stored] = uow.notifications.rows.values()
    assert stored.provider_message_id == "msg-1"


def test_a_reject_event_fails_the_email_and_foreign_events_are_ignored() -> None:
    uow = FakeUnitOfWork()
    run_fan_out(uow, confirmed())
    [n] = claim_emails(uow=uow, limit=10, policy=EmailPolicy())
    rejected = ses_event(n.notification_id, "ses-1", "Reject", reason="Bad content")
    assert record_provider_event(rejected, uow=uow) is None
    [stored] = uow.notifications.rows.values()
    assert (stored.status, stored.last_error) == (
        NotificationStatus.FAILED,
        "rejected by the provider: Bad content",
    )
    assert record_provider_event(ses_event(None, "other"), uow=uow) is None
    assert record_provider_event(ses_event("not-ours", "other"), uow=uow) is None
    assert record_provider_event(ses_event(n.notification_id, "x", "Open"), uow=uow) is None


class _CommitsFailFirst(FakeUnitOfWork):
    """A unit of work whose next `failures` commits lose the database connection."""

    failures = 0

    def _commit(self) -> None:
        if self.failures:
            self.failures -= 1
            raise sa_exc.OperationalError("COMMIT", {}, Exception("connection lost"))
        super()._commit()


def test_a_sent_email_is_recorded_once_the_database_is_back() -> None:
    uow, mailer = _CommitsFailFirst(), FakeMailer()
    run_fan_out(uow, confirmed())
    email_policy = EmailPolicy()
    [notification] = claim_emails(uow=uow, limit=10, policy=email_policy)
    uow.failures = 2
    status = send_email(notification, uow=uow, mailer=mailer, policy=email_policy)
    assert status is NotificationStatus.SENT
    assert len(mailer.sent) == 1  # recorded after the outage, not sent again
    [stored] = uow.notifications.rows.values()
    assert stored.status is NotificationStatus.SENT


def test_an_acknowledged_delivery_is_recorded_once_the_database_is_back() -> None:
    uow, transport = _CommitsFailFirst(), FakeTransport()
    hook = register(uow)
    run_fan_out(uow, confirmed())
    [due] = claim_deliveries(uow=uow, limit=10, busy={}, per_endpoint=4, lease=timedelta(minutes=1))
    uow.failures = 2
    attempt = attempt_delivery(
        due, uow=uow, transport=transport, resolver=FakeResolver(PUBLIC), policy=policy()
    )
    assert attempt is not None
    assert attempt.succeeded
    assert len(transport.sent) == 1
    [delivery] = uow.deliveries.rows.values()
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert delivery.webhook_id == hook.webhook_id


# Retention ---------------------------------------------------------------------------------


def test_history_retention_deletes_only_old_finished_deliveries_and_emails() -> None:
    uow, transport, resolver = FakeUnitOfWork(), FakeTransport(), FakeResolver(PUBLIC)
    register(uow)
    run_fan_out(uow, confirmed("old@example.com"))
    deliver_due(uow, transport, resolver)  # the old delivery succeeds
    email_policy = EmailPolicy()
    for notification in claim_emails(uow=uow, limit=10, policy=email_policy):
        send_email(notification, uow=uow, mailer=FakeMailer(), policy=email_policy)
    run_fan_out(
        uow,
        new_envelope(
            events_pb2.OrderFailed(
                order_id="o-2", customer_email="x@example.com", reason="declined"
            ),
            source="orders",
            subject="o-2",
        ),
    )
    run_fan_out(uow, confirmed("new@example.com"))  # pending, and recent
    old = datetime.now(UTC) - timedelta(days=40)
    for delivery in uow.deliveries.rows.values():
        if delivery.status is DeliveryStatus.SUCCEEDED:
            delivery.created_at = old
    for notification in uow.notifications.rows.values():
        if notification.status is NotificationStatus.SENT:
            notification.created_at = old
    pending_email = next(
        n for n in uow.notifications.rows.values() if n.status is NotificationStatus.PENDING
    )
    pending_email.created_at = old  # old but never sent: kept

    purged = purge_history(uow=uow, older_than=timedelta(days=30), batch=1)

    assert purged == 2  # the delivered webhook and the sent email, one batch of one each
    assert all(d.status is not DeliveryStatus.SUCCEEDED for d in uow.deliveries.rows.values())
    statuses = sorted(n.status.value for n in uow.notifications.rows.values())
    assert NotificationStatus.SENT.value not in statuses
    assert pending_email.notification_id in uow.notifications.rows
    assert purge_history(uow=uow, older_than=timedelta(days=30)) == 0
