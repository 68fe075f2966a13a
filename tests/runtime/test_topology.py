"""The topology declaration: physical names, consistency and the queries services rely on."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from eventforge.runtime.settings import Settings
from eventforge.topology import (
    TOPOLOGY,
    UPLOADS_INCOMING_PREFIX,
    UPLOADS_QUARANTINE_PREFIX,
    Queue,
    schedule_problem,
)


def _names(queues: tuple[Queue, ...]) -> set[str]:
    return {q.name for q in queues}


def test_declaration_has_no_problems() -> None:
    assert TOPOLOGY.problems() == []
    TOPOLOGY.validate()


@pytest.mark.parametrize("queue", TOPOLOGY.queues, ids=lambda q: q.name)
def test_every_filtered_event_type_is_carried_by_its_topic(queue: Queue) -> None:
    if queue.topic is None:
        assert queue.event_types is None
        assert queue.filter_policy() is None
        return
    carried = TOPOLOGY.event_types_of(queue.topic)
    if queue.event_types is None:
        assert queue.filter_policy() is None
    else:
        assert queue.event_types
        assert set(queue.event_types) <= set(carried)
        assert queue.filter_policy() == {"event_type": list(queue.event_types)}


def test_names_resolve_with_the_prefix() -> None:
    names = TOPOLOGY.resolve("acme-dev")
    assert names.topics == {
        "orders": "acme-dev-orders-events",
        "files": "acme-dev-files-events",
        "notifier": "acme-dev-notifier-events",
        "uploads": "acme-dev-uploads-events",
        "email": "acme-dev-email-events",
        "inbound": "acme-dev-inbound-events",
    }
    assert names.configuration_set == "acme-dev-email"
    assert names.buckets == {
        "uploads": "acme-dev-uploads",
        "processed": "acme-dev-processed",
        "receipts": "acme-dev-receipts",
    }
    uploads = names.queues["files-uploads"]
    assert (uploads.name, uploads.dlq_name, uploads.topic_name) == (
        "acme-dev-files-uploads",
        "acme-dev-files-uploads-dlq",
        "acme-dev-uploads-events",
    )


def test_bucket_names_are_qualified_by_account_and_region_in_the_cloud(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = TOPOLOGY.resolve("acme-dev", account_id="123456789012", region="eu-west-1")
    assert names.buckets["uploads"] == "acme-dev-uploads-123456789012-eu-west-1"
    assert names.topics["orders"] == "acme-dev-orders-events"
    monkeypatch.setenv("EVENTFORGE_NAME_PREFIX", "acme-dev")
    monkeypatch.setenv("EVENTFORGE_AWS_ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = Settings()
    assert TOPOLOGY.resolve_for(settings).buckets == names.buckets
    with pytest.raises(ValueError, match="region"):
        TOPOLOGY.resolve("acme-dev", account_id="123456789012")
    with pytest.raises(ValueError, match="invalid names"):
        TOPOLOGY.resolve("a" * 40, account_id="123456789012", region="ap-southeast-2")


def test_every_queue_has_a_dlq_and_a_redrive_policy() -> None:
    names = TOPOLOGY.resolve("eventforge")
    assert set(names.queues) == _names(TOPOLOGY.queues)
    for resolved in names.queues.values():
        assert resolved.dlq_name == f"{resolved.name}-dlq"
        assert resolved.spec.max_receives == 5
        assert resolved.spec.visibility_timeout_seconds == 30
        assert resolved.spec.dlq_retention_seconds >= resolved.spec.retention_seconds


@pytest.mark.parametrize("prefix", ["Acme", "acme_dev", "-acme", "x" * 60])
def test_a_prefix_giving_invalid_names_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid names"):
        TOPOLOGY.resolve(prefix)


def test_queues_consumed_by_each_service() -> None:
    assert _names(TOPOLOGY.queues_consumed_by("orders")) == {
        "orders-orders",
        "orders-inbound",
        "orders-jobs",
    }
    assert _names(TOPOLOGY.queues_consumed_by("files")) == {
        "files-orders",
        "files-uploads",
        "files-jobs",
    }
    assert _names(TOPOLOGY.queues_consumed_by("notifier")) == {
        "notifier-orders",
        "notifier-files",
        "notifier-email",
        "notifier-jobs",
    }
    assert _names(TOPOLOGY.queues_consumed_by("ingest")) == {"ingest-jobs"}


def test_every_job_targets_its_service_jobs_queue() -> None:
    for job in TOPOLOGY.jobs:
        assert TOPOLOGY.queue(job.queue).topic is None
        assert job.handler_key == f"job:{job.name}"
    assert {j.target for j in TOPOLOGY.jobs} == {"orders", "files", "notifier", "ingest"}


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("rate(1 minute)", False),
        ("rate(5 minutes)", False),
        ("cron(0 3 * * ? *)", False),
        ("rate(1 minutes)", True),
        ("rate(5 minute)", True),
        ("rate(0 minutes)", True),
        ("rate(5 seconds)", True),
        ("cron(0 3 * * ?)", True),
        ("every 5 minutes", True),
    ],
)
def test_schedule_expressions(expression: str, problem: bool) -> None:
    assert (schedule_problem(expression) is not None) is problem


def test_topic_published_by_each_service() -> None:
    assert TOPOLOGY.topic_published_by("orders").name == "orders"
    assert TOPOLOGY.topic_published_by("files").name == "files"
    assert TOPOLOGY.topic_published_by("notifier").name == "notifier"
    assert TOPOLOGY.topic("uploads").publisher is None
    assert TOPOLOGY.event_types_of("uploads") == ()


@pytest.mark.parametrize(
    ("topic", "event_type", "expected"),
    [
        ("orders", "order.placed", {"orders-orders"}),
        ("orders", "order.confirmed", {"files-orders", "notifier-orders"}),
        ("orders", "order.failed", {"notifier-orders"}),
        ("orders", "order.compensation_failed", {"notifier-orders"}),
        ("files", "receipt.ready", {"notifier-files"}),
        ("files", "file.uploaded", set()),
        ("notifier", "notification.sent", set()),
        ("uploads", None, {"files-uploads"}),
        ("email", None, {"notifier-email"}),
    ],
)
def test_queues_receiving_an_event(topic: str, event_type: str | None, expected: set[str]) -> None:
    assert _names(TOPOLOGY.queues_receiving(topic, event_type)) == expected


def test_uploads_bucket_notifies_only_fresh_uploads() -> None:
    uploads = TOPOLOGY.bucket("uploads")
    assert [(n.topic, n.prefix, n.events) for n in uploads.notifications] == [
        ("uploads", UPLOADS_INCOMING_PREFIX, ("s3:ObjectCreated:*",))
    ]
    # Rejected uploads are moved to quarantine/ and must not notify again.
    assert not UPLOADS_QUARANTINE_PREFIX.startswith(UPLOADS_INCOMING_PREFIX)
    assert {(r.prefix, r.days) for r in uploads.expiry} == {
        (UPLOADS_INCOMING_PREFIX, 2),
        (UPLOADS_QUARANTINE_PREFIX, 30),
    }
    assert TOPOLOGY.notifying_buckets("uploads") == (uploads,)


def test_ses_publishes_its_email_events_to_the_email_topic_only() -> None:
    mail = TOPOLOGY.mail_events
    assert mail is not None
    assert "send" in mail.event_types
    assert [t.name for t in TOPOLOGY.topics if TOPOLOGY.fed_by_mail_events(t.name)] == ["email"]
    assert TOPOLOGY.topic("email").publisher is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"topic": "nowhere"}, "mail events go to unknown topic nowhere"),
        ({"topic": "orders"}, "must have no publisher"),
        ({"event_types": ("delivery",)}, "must include send"),
        ({"event_types": ("send", "opened")}, "mail event type opened"),
    ],
)
def test_a_broken_mail_events_declaration_is_a_problem(
    change: dict[str, object], problem: str
) -> None:
    assert TOPOLOGY.mail_events is not None
    broken = dataclasses.replace(
        TOPOLOGY,
        mail_events=dataclasses.replace(TOPOLOGY.mail_events, **change),  # type: ignore[arg-type]
    )
    assert any(problem in found for found in broken.problems())


def test_only_the_uploads_bucket_needs_cors() -> None:
    assert {b.name for b in TOPOLOGY.buckets if b.cors_for_presigned_uploads} == {"uploads"}


def test_problems_are_reported() -> None:
    stray = Queue("files", "orders", event_types=("file.uploaded",))
    broken = dataclasses.replace(
        TOPOLOGY,
        queues=(*TOPOLOGY.queues, stray, Queue("notifier", "missing", event_types=None)),
    )
    problems = broken.problems()
    assert "queue files-orders filters on file.uploaded, which topic orders does not carry" in (
        problems
    )
    assert "duplicate queue files-orders" in problems
    assert "queue notifier-missing subscribes to unknown topic missing" in problems
    with pytest.raises(ValueError, match="invalid topology"):
        broken.validate()


def test_unknown_names_raise_key_error() -> None:
    with pytest.raises(KeyError):
        TOPOLOGY.topic("payments")
    with pytest.raises(KeyError):
        TOPOLOGY.queue("orders-files")


def test_importing_the_topology_loads_no_aws_sdk() -> None:
    code = (
        "import sys, eventforge.topology; print('boto3' in sys.modules or 'pulumi' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == "False"
