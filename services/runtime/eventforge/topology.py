"""The event backbone (topics, queues, subscriptions, buckets) declared once for every provisioner.

Plain data with no AWS SDK: the local provisioner and the Pulumi program both read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventforge.runtime.settings import ServiceName, Settings

EVENT_TYPE_ATTRIBUTE = "event_type"
"""The SNS/SQS message attribute that carries an event's type and that filter policies match."""

UPLOADS_INCOMING_PREFIX = "incoming/"
"""Key prefix of fresh uploads; only objects created here notify the files service."""

UPLOADS_QUARANTINE_PREFIX = "quarantine/"
"""Key prefix where the files worker moves rejected uploads (outside the notified prefix)."""

JOBS = "jobs"
"""The logical suffix of a service's jobs queue (`{service}-jobs`), fed by its schedules."""

JOB_PREFIX = "job:"
"""Handler registry keys of scheduled jobs' ticks: `job:` + the job's name."""

_DAY = 24 * 60 * 60
_JOB_NAME = re.compile(r"^[a-z][a-z0-9-]{1,46}[a-z0-9]$")
_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((?P<fields>\S+( \S+){5})\)$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class Topic:
    """An SNS topic: who publishes to it and which event types it carries."""

    name: str
    publisher: ServiceName | None
    event_types: tuple[str, ...]


@dataclass(frozen=True)
class Queue:
    """One consuming service's SQS queue subscribed to one topic, with its DLQ."""

    consumer: ServiceName
    topic: str | None
    """The topic it subscribes to; None for the service's jobs queue, which its schedules feed."""
    event_types: tuple[str, ...] | None
    """Exact `event_type` values let through; None subscribes to everything (no filter)."""
    max_receives: int = 5
    visibility_timeout_seconds: int = 30
    retention_seconds: int = 4 * _DAY
    dlq_retention_seconds: int = 14 * _DAY
    """Longer than the queue's: a dead letter keeps its original enqueue time."""

    @property
    def name(self) -> str:
        """The logical name, `{consumer}-{topic}` (`{consumer}-jobs` for a jobs queue)."""
        return f"{self.consumer}-{self.topic or JOBS}"

    def filter_policy(self) -> dict[str, list[str]] | None:
        """The subscription's filter policy (message-attribute scope), or None for no filter."""
        if self.topic is None or self.event_types is None:
            return None
        return {EVENT_TYPE_ATTRIBUTE: list(self.event_types)}


@dataclass(frozen=True)
class BucketNotification:
    """S3 object events under a key prefix published to a topic."""

    topic: str
    prefix: str
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)


@dataclass(frozen=True)
class ExpiryRule:
    """A lifecycle hint: expire objects under a key prefix after some days."""

    prefix: str
    days: int


@dataclass(frozen=True)
class Bucket:
    """An S3 bucket with its notifications, browser-upload CORS need and lifecycle hints."""

    name: str
    notifications: tuple[BucketNotification, ...] = ()
    cors_for_presigned_uploads: bool = False
    expiry: tuple[ExpiryRule, ...] = ()


@dataclass(frozen=True)
class MailEvents:
    """The mail provider's record of each email, published to a topic (SES event publishing).

    SES publishes an event of each matching type for every email sent with the configuration
    set, tagged with what the sender tagged the email with: the notifier learns from the `send`
    event that SES accepted an email whose answer it never recorded (a crash, a lost reply).
    """

    configuration_set: str
    """The logical name of the SES configuration set the notifier sends with."""
    topic: str
    event_types: tuple[str, ...] = ("send", "reject", "bounce", "complaint", "delivery")
    """SES's matching event types (its lower-case names)."""


@dataclass(frozen=True)
class Job:
    """Recurring work of one service: each tick is a message sent to the service's jobs queue.

    In the cloud an EventBridge Scheduler schedule sends the tick; locally `eventforge up` runs
    one scheduler with the same schedules. The worker handles a tick like any event (registry
    key `job:{name}`): traced, retried, dead-lettered, and once per tick (the tick's scheduled
    time is its id).
    """

    name: str
    schedule: str
    """An EventBridge Scheduler expression in UTC: `rate(5 minutes)` or `cron(0 3 * * ? *)`."""
    target: ServiceName
    description: str
    payload: tuple[tuple[str, str], ...] = ()
    """Fixed parameters the tick carries to the handler."""

    @property
    def handler_key(self) -> str:
        """The handler registry key of this job's ticks."""
        return JOB_PREFIX + self.name

    @property
    def queue(self) -> str:
        """The logical name of the queue its ticks go to."""
        return f"{self.target}-{JOBS}"

    def tick_body(self, tick: str) -> str:
        """The message body of one tick: `{"job", "tick", "payload"}` as JSON.

        `tick` is the tick's scheduled time (ISO 8601, UTC); the Pulumi program passes
        EventBridge Scheduler's `<aws.scheduler.scheduled-time>`, which it fills in per tick.
        """
        return json.dumps({"job": self.name, "tick": tick, "payload": dict(self.payload)})


@dataclass(frozen=True)
class ResolvedQueue:
    """Physical names of a queue, its DLQ and the topic it subscribes to."""

    spec: Queue
    name: str
    dlq_name: str
    topic_name: str | None
    """None for a jobs queue (no subscription)."""


@dataclass(frozen=True)
class ResolvedTopology:
    """Physical names of every resource for one name prefix, keyed by logical name."""

    prefix: str
    topics: Mapping[str, str]
    queues: Mapping[str, ResolvedQueue]
    buckets: Mapping[str, str]
    configuration_set: str | None = None
    """The SES configuration set's physical name, when the topology declares mail events."""


@dataclass(frozen=True)
class Topology:
    """The whole event backbone: topics, per-consumer queues, buckets and mail events."""

    topics: tuple[Topic, ...]
    queues: tuple[Queue, ...]
    buckets: tuple[Bucket, ...]
    mail_events: MailEvents | None = None
    jobs: tuple[Job, ...] = ()

    def topic(self, name: str) -> Topic:
        """The topic with this logical name."""
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(f"no topic {name!r}")

    def queue(self, name: str) -> Queue:
        """The queue with this logical name (`{consumer}-{topic}`)."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(f"no queue {name!r}")

    def bucket(self, name: str) -> Bucket:
        """The bucket with this logical name."""
        for bucket in self.buckets:
            if bucket.name == name:
                return bucket
        raise KeyError(f"no bucket {name!r}")

    def job(self, name: str) -> Job:
        """The job with this name."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(f"no job {name!r}")

    def jobs_of(self, service: ServiceName) -> tuple[Job, ...]:
        """The jobs whose ticks a service's workers handle."""
        return tuple(j for j in self.jobs if j.target == service)

    def queues_consumed_by(self, service: ServiceName) -> tuple[Queue, ...]:
        """The queues a service's workers read."""
        return tuple(q for q in self.queues if q.consumer == service)

    def topic_published_by(self, service: ServiceName) -> Topic:
        """The one topic a service publishes its events to."""
        for topic in self.topics:
            if topic.publisher == service:
                return topic
        raise KeyError(f"{service!r} publishes to no topic")

    def event_types_of(self, topic: str) -> tuple[str, ...]:
        """The event types a topic carries."""
        return self.topic(topic).event_types

    def queues_receiving(self, topic: str, event_type: str | None) -> tuple[Queue, ...]:
        """The queues a message on `topic` reaches (`event_type` None: a message without one)."""
        return tuple(
            q
            for q in self.queues
            if q.topic == topic and (q.event_types is None or event_type in q.event_types)
        )

    def notifying_buckets(self, topic: str) -> tuple[Bucket, ...]:
        """The buckets whose object events are published to `topic`."""
        return tuple(b for b in self.buckets if any(n.topic == topic for n in b.notifications))

    def fed_by_mail_events(self, topic: str) -> bool:
        """Whether the mail provider publishes its email events to `topic`."""
        return self.mail_events is not None and self.mail_events.topic == topic

    def resolve(
        self, prefix: str, *, account_id: str | None = None, region: str | None = None
    ) -> ResolvedTopology:
        """Physical names for one environment's name prefix; raises ValueError if one is invalid.

        S3 bucket names are global across every AWS account: with an account (the cloud), each
        is qualified by it and the region, `{prefix}-{name}-{account}-{region}`, so it cannot
        collide with someone else's; without one (the local emulator) it is `{prefix}-{name}`.
        """
        topics = {t.name: f"{prefix}-{t.name}-events" for t in self.topics}
        queues = {
            q.name: ResolvedQueue(
                spec=q,
                name=f"{prefix}-{q.name}",
                dlq_name=f"{prefix}-{q.name}-dlq",
                topic_name=None if q.topic is None else topics[q.topic],
            )
            for q in self.queues
        }
        if account_id is not None and not region:
            raise ValueError("bucket names qualified by an account need its region too")
        scope = "" if account_id is None else f"-{account_id}-{region}"
        buckets = {b.name: f"{prefix}-{b.name}{scope}" for b in self.buckets}
        configuration_set = (
            None if self.mail_events is None else f"{prefix}-{self.mail_events.configuration_set}"
        )
        resolved = ResolvedTopology(
            prefix=prefix,
            topics=topics,
            queues=queues,
            buckets=buckets,
            configuration_set=configuration_set,
        )
        _check_names(resolved)
        return resolved

    def resolve_for(self, settings: Settings) -> ResolvedTopology:
        """Physical names of one process's environment (its prefix, account and region)."""
        return self.resolve(
            settings.name_prefix, account_id=settings.aws_account_id, region=settings.aws_region
        )

    def problems(self) -> list[str]:
        """Inconsistencies in the declaration; empty when it is sound."""
        found = _duplicates("topic", [t.name for t in self.topics])
        found += _duplicates("queue", [q.name for q in self.queues])
        found += _duplicates("bucket", [b.name for b in self.buckets])
        publishers = [t.publisher for t in self.topics if t.publisher is not None]
        found += _duplicates("publisher", [str(p) for p in publishers])
        topics = {t.name: t for t in self.topics}
        for queue in self.queues:
            found += _queue_problems(queue, topics)
        for bucket in self.buckets:
            found += [
                f"bucket {bucket.name} notifies unknown topic {n.topic}"
                for n in bucket.notifications
                if n.topic not in topics
            ]
        if self.mail_events is not None:
            found += _mail_events_problems(self.mail_events, topics)
        found += _duplicates("job", [j.name for j in self.jobs])
        queue_names = {q.name for q in self.queues}
        for job in self.jobs:
            found += _job_problems(job, queue_names)
        found += [
            f"topic {t.name} has neither a publisher nor a bucket or mail events feeding it"
            for t in self.topics
            if t.publisher is None
            and not self.notifying_buckets(t.name)
            and not self.fed_by_mail_events(t.name)
        ]
        return found

    def validate(self) -> None:
        """Raise ValueError listing every problem of the declaration."""
        found = self.problems()
        if found:
            raise ValueError("invalid topology: " + "; ".join(found))


def _duplicates(kind: str, names: list[str]) -> list[str]:
    return [f"duplicate {kind} {n}" for n in sorted(set(names)) if names.count(n) > 1]


def _job_problems(job: Job, queue_names: set[str]) -> list[str]:
    found: list[str] = []
    if not _JOB_NAME.match(job.name):
        found.append(f"job name {job.name} must be 3..48 of a-z, 0-9 and -")
    if job.queue not in queue_names:
        found.append(f"job {job.name} targets {job.target}, which has no {JOBS} queue")
    problem = schedule_problem(job.schedule)
    if problem is not None:
        found.append(f"job {job.name}: {problem}")
    return found


def schedule_problem(expression: str) -> str | None:
    """Why a schedule expression is not one EventBridge Scheduler and the local scheduler share
    (`rate(N minute[s]|hour[s]|day[s])`, singular only for 1, or a six-field `cron(...)`)."""
    rate = _RATE.match(expression)
    if rate is not None:
        plural = rate["unit"].endswith("s")
        if plural == (rate["value"] == "1"):
            return f"schedule {expression}: say 1 minute/hour/day, and N minutes/hours/days"
        return None
    if _CRON.match(expression) is not None:
        return None
    return f"schedule {expression} is neither rate(N unit) nor cron(six fields)"


def _queue_problems(queue: Queue, topics: Mapping[str, Topic]) -> list[str]:
    found: list[str] = []
    if queue.topic is None:
        if queue.event_types is not None:
            found.append(f"jobs queue {queue.name} cannot filter on event types")
        return found + _queue_limits(queue)
    topic = topics.get(queue.topic)
    if topic is None:
        return [f"queue {queue.name} subscribes to unknown topic {queue.topic}"]
    if queue.event_types is not None:
        if not queue.event_types:
            found.append(f"queue {queue.name} filters on no event type (receives nothing)")
        found += [
            f"queue {queue.name} filters on {e}, which topic {topic.name} does not carry"
            for e in queue.event_types
            if e not in topic.event_types
        ]
    return found + _queue_limits(queue)


def _queue_limits(queue: Queue) -> list[str]:
    found: list[str] = []
    if not 1 <= queue.max_receives <= 1000:
        found.append(f"queue {queue.name} max_receives must be 1..1000")
    if not 0 <= queue.visibility_timeout_seconds <= 12 * 60 * 60:
        found.append(f"queue {queue.name} visibility timeout must be 0..43200 s")
    for retention in (queue.retention_seconds, queue.dlq_retention_seconds):
        if not 60 <= retention <= 14 * _DAY:
            found.append(f"queue {queue.name} retention must be 60..1209600 s")
    if queue.dlq_retention_seconds < queue.retention_seconds:
        found.append(f"queue {queue.name} DLQ retention is shorter than the queue's")
    return found


_MAIL_EVENT_TYPES = frozenset(
    {
        "send",
        "reject",
        "bounce",
        "complaint",
        "delivery",
        "open",
        "click",
        "renderingFailure",
        "deliveryDelay",
        "subscription",
    }
)


def _mail_events_problems(mail: MailEvents, topics: Mapping[str, Topic]) -> list[str]:
    found: list[str] = []
    topic = topics.get(mail.topic)
    if topic is None:
        found.append(f"mail events go to unknown topic {mail.topic}")
    elif topic.publisher is not None or topic.event_types:
        found.append(f"mail events topic {mail.topic} must have no publisher and no event types")
    if "send" not in mail.event_types:
        found.append("mail events must include send (it confirms an unrecorded send)")
    found += [
        f"mail event type {e} is not one SES publishes"
        for e in mail.event_types
        if e not in _MAIL_EVENT_TYPES
    ]
    if not _QUEUE_NAME.match(mail.configuration_set):
        found.append(f"configuration set name {mail.configuration_set} is invalid")
    return found


def _check_names(resolved: ResolvedTopology) -> None:
    bad = [n for n in resolved.topics.values() if not _TOPIC_NAME.match(n)]
    bad += [
        n
        for q in resolved.queues.values()
        for n in (q.name, q.dlq_name)
        if not _QUEUE_NAME.match(n)
    ]
    bad += [n for n in resolved.buckets.values() if not _BUCKET_NAME.match(n)]
    if bad:
        raise ValueError(f"prefix {resolved.prefix!r} gives invalid names: {', '.join(bad)}")


TOPOLOGY = Topology(
    topics=(
        Topic(
            "orders",
            publisher="orders",
            event_types=(
                "order.placed",
                "order.confirmed",
                "order.failed",
                "order.cancelled",
                "order.compensation_failed",
            ),
        ),
        Topic(
            "files",
            publisher="files",
            event_types=("file.uploaded", "file.processed", "file.rejected", "receipt.ready"),
        ),
        Topic(
            "notifier",
            publisher="notifier",
            event_types=("notification.sent", "notification.failed"),
        ),
        # S3 object-created notifications carry no message attributes, hence no event types.
        Topic("uploads", publisher=None, event_types=()),
        # Nor do SES's email events (send, delivery, bounce, ...).
        Topic("email", publisher=None, event_types=()),
        # What external systems push in: signed webhooks, verified and recorded by ingest.
        Topic("inbound", publisher="ingest", event_types=("payment.succeeded", "payment.failed")),
    ),
    queues=(
        Queue("orders", "orders", event_types=("order.placed",)),
        Queue("files", "orders", event_types=("order.confirmed",)),
        Queue("files", "uploads", event_types=None),
        Queue(
            "notifier",
            "orders",
            event_types=(
                "order.confirmed",
                "order.failed",
                "order.cancelled",
                "order.compensation_failed",
            ),
        ),
        Queue(
            "notifier",
            "files",
            event_types=("receipt.ready", "file.processed", "file.rejected"),
        ),
        Queue("notifier", "email", event_types=None),
        Queue("orders", "inbound", event_types=("payment.succeeded", "payment.failed")),
        Queue("orders", None, event_types=None),
        Queue("files", None, event_types=None),
        Queue("notifier", None, event_types=None),
        Queue("ingest", None, event_types=None),
    ),
    buckets=(
        Bucket(
            "uploads",
            notifications=(BucketNotification("uploads", prefix=UPLOADS_INCOMING_PREFIX),),
            cors_for_presigned_uploads=True,
            expiry=(
                ExpiryRule(UPLOADS_INCOMING_PREFIX, days=2),
                ExpiryRule(UPLOADS_QUARANTINE_PREFIX, days=30),
            ),
        ),
        Bucket("processed"),
        Bucket("receipts"),
    ),
    mail_events=MailEvents(configuration_set="email", topic="email"),
    jobs=(
        Job(
            "order-recovery",
            "rate(1 minute)",
            "orders",
            "Resume sagas idle for 2 minutes; fail orders whose payment stayed pending too long.",
        ),
        Job(
            "orders-retention",
            "rate(1 hour)",
            "orders",
            "Delete inbox entries and published outbox rows past their retention.",
        ),
        Job(
            "upload-expiry-sweep",
            "rate(1 minute)",
            "files",
            "Expire uploads whose presigned URL lapsed without an object.",
        ),
        Job(
            "files-retention",
            "rate(1 hour)",
            "files",
            "Delete inbox entries and published outbox rows past their retention.",
        ),
        Job(
            "delivery-retries",
            "rate(1 minute)",
            "notifier",
            "Send the webhook deliveries and emails whose retry is due.",
        ),
        Job(
            "notifier-retention",
            "rate(1 hour)",
            "notifier",
            "Delete inbox entries, published outbox rows and old deliveries and emails.",
        ),
        Job(
            "ingest-retention",
            "rate(1 hour)",
            "ingest",
            "Delete inbox entries, published outbox rows and provider event ids past retention.",
        ),
    ),
)
"""The EventForge backbone."""
