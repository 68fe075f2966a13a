"""Dead-letter queue operations: queue depths and ages, peek, redrive and purge.

Plain functions on an SQS client and the resolved topology, shared by the `eventforge queues`
and `eventforge dlq` commands; they work the same on the emulator and on real AWS.

Reading a queue means receiving from it, which increments each message's
`ApproximateReceiveCount`. On a main queue that pushes messages toward its DLQ, so nothing here
ever receives from a main queue: their oldest-message age comes from CloudWatch only. A DLQ has
no redrive policy, so receiving from it has no consequence besides that counter.

Redrive is done by hand (receive from the DLQ, SendMessage to the source queue, DeleteMessage
from the DLQ only once the send succeeded) because the emulator lacks `StartMessageMoveTask`.
A crash between the send and the delete leaves the message in both queues: consumers are
idempotent (inbox), so a duplicate is harmless, and nothing is ever lost.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from eventforge.runtime import aws

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
    )

    from eventforge.runtime.settings import Settings
    from eventforge.topology import ResolvedQueue, ResolvedTopology

HOLD_SECONDS = 60
"""Visibility timeout of messages held while a command scans a DLQ; reset to 0 afterwards."""
WAIT_SECONDS = 1
"""Long poll of each DLQ receive: short polls on AWS can miss messages of a small queue."""
PEEK_SAMPLE = 10
"""Messages sampled from a DLQ for its oldest-message age."""
CLOUDWATCH_WINDOW = timedelta(minutes=15)

_PURGE_IN_PROGRESS = ("AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress")
_QUEUE_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")

AgeSource = Literal["cloudwatch", "peek"]


class UnknownQueueError(LookupError):
    """A queue name that is not in the topology; `valid` lists the names that are."""

    def __init__(self, name: str, valid: Sequence[str]) -> None:
        super().__init__(f"unknown queue {name!r}; valid queues: {', '.join(valid)}")
        self.name = name
        self.valid = list(valid)


class QueueMissingError(LookupError):
    """A queue of the topology that does not exist on the endpoint (not provisioned)."""


def find_queue(names: ResolvedTopology, name: str) -> ResolvedQueue:
    """The queue called `name`: logical (`files-uploads`) or physical, of the queue or its DLQ."""
    for logical, resolved in names.queues.items():
        if name in (logical, f"{logical}-dlq", resolved.name, resolved.dlq_name):
            return resolved
    raise UnknownQueueError(name, sorted(names.queues))


def cloudwatch(settings: Settings) -> Any:
    """A CloudWatch client configured like the other AWS clients (for queue ages only)."""
    return aws.cloudwatch(settings)


def queue_url(sqs: SQSClient, physical_name: str) -> str:
    """The URL of a queue; QueueMissingError if it does not exist."""
    try:
        return sqs.get_queue_url(QueueName=physical_name)["QueueUrl"]
    except ClientError as error:
        if _code(error) in _QUEUE_MISSING:
            raise QueueMissingError(f"queue {physical_name} does not exist") from error
        raise


# --- stats -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    """Depth and age of one queue or DLQ."""

    name: str
    """Logical name: `files-uploads`, or `files-uploads-dlq` for its DLQ."""
    physical_name: str
    is_dlq: bool
    source: str | None
    """For a DLQ, the logical name of the queue it collects from."""
    exists: bool
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    oldest_age_seconds: float | None = None
    oldest_age_source: AgeSource | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "physical_name": self.physical_name,
            "dlq": self.is_dlq,
            "source": self.source,
            "exists": self.exists,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "oldest_age_seconds": self.oldest_age_seconds,
            "oldest_age_source": self.oldest_age_source,
        }


def queue_stats(
    sqs: SQSClient, names: ResolvedTopology, *, cloudwatch: Any | None = None
) -> list[QueueStats]:
    """Every queue of the topology followed by its DLQ.

    Oldest-message age: for a main queue, CloudWatch's `ApproximateAgeOfOldestMessage` (latest
    datapoint of the last 15 minutes; None when `cloudwatch` is None, unreachable or has none,
    as on the emulator). For a DLQ, the oldest `SentTimestamp` of a peek at up to 10 messages
    (a lower bound when more are visible; a dead letter keeps its original enqueue time).
    """
    stats: list[QueueStats] = []
    for logical, resolved in names.queues.items():
        main, _url = _stats(sqs, logical, resolved.name, is_dlq=False, source=None)
        if cloudwatch is not None and (main.visible or main.in_flight):
            age = _cloudwatch_age(cloudwatch, resolved.name)
            if age is not None:
                main = replace(main, oldest_age_seconds=age, oldest_age_source="cloudwatch")
        stats.append(main)
        dlq, dlq_url = _stats(sqs, f"{logical}-dlq", resolved.dlq_name, is_dlq=True, source=logical)
        if dlq_url is not None and dlq.visible:
            age = _peek_age(sqs, dlq_url)
            if age is not None:
                dlq = replace(dlq, oldest_age_seconds=age, oldest_age_source="peek")
        stats.append(dlq)
    return stats


def _stats(
    sqs: SQSClient, name: str, physical: str, *, is_dlq: bool, source: str | None
) -> tuple[QueueStats, str | None]:
    try:
        url = queue_url(sqs, physical)
    except QueueMissingError:
        return QueueStats(name, physical, is_dlq, source, exists=False), None
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    stats = QueueStats(
        name,
        physical,
        is_dlq,
        source,
        exists=True,
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )
    return stats, url


def _cloudwatch_age(cloudwatch: Any, physical_name: str) -> float | None:
    end = datetime.now(UTC)
    try:
        reply = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": physical_name}],
            StartTime=end - CLOUDWATCH_WINDOW,
            EndTime=end,
            Period=60,
            Statistics=["Maximum"],
        )
    except (ClientError, BotoCoreError):
        return None  # no permission, or an endpoint without CloudWatch
    points = reply.get("Datapoints") or []
    if not points:
        return None
    latest = max(points, key=lambda p: p["Timestamp"])
    return float(latest["Maximum"])


def _peek_age(sqs: SQSClient, url: str) -> float | None:
    # VisibilityTimeout=0: the sampled messages stay visible; only a DLQ is ever peeked.
    messages = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=PEEK_SAMPLE,
        VisibilityTimeout=0,
        WaitTimeSeconds=WAIT_SECONDS,
        MessageSystemAttributeNames=["SentTimestamp"],
    ).get("Messages", [])
    sent = [s for s in (_sent_millis(m) for m in messages) if s is not None]
    if not sent:
        return None
    return max(0.0, time.time() - min(sent) / 1000)


def depth(sqs: SQSClient, queue: ResolvedQueue) -> int:
    """Messages in the queue's DLQ, visible or in flight (approximate)."""
    return _visible(sqs, queue_url(sqs, queue.dlq_name), in_flight=True)


# --- peek --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One message of a DLQ, as received."""

    message_id: str
    sent_at: datetime | None
    receive_count: int | None
    """`ApproximateReceiveCount`, including the receive that read it."""
    message_attributes: Mapping[str, MessageAttributeValueOutputTypeDef]
    body: str
    trace_header: str | None = None
    """The `AWSTraceHeader` system attribute, if any (carried over on redrive)."""

    def attributes(self) -> dict[str, str]:
        """Message attributes as display strings (binary ones as `<n bytes>`)."""
        shown: dict[str, str] = {}
        for name, value in sorted(self.message_attributes.items()):
            if "StringValue" in value:
                shown[name] = value["StringValue"]
            elif "BinaryValue" in value:
                shown[name] = f"<{len(value['BinaryValue'])} bytes>"
            else:
                shown[name] = f"<{value['DataType']}>"
        return shown

    def body_json(self) -> Any | None:
        """The body parsed as JSON (with an SNS envelope's `Message` parsed too), else None."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return None
        if isinstance(parsed, dict) and isinstance(parsed.get("Message"), str):
            with contextlib.suppress(ValueError):  # an SNS envelope around plain text
                parsed = {**parsed, "Message": json.loads(parsed["Message"])}
        return parsed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        body = self.body_json()
        return {
            "message_id": self.message_id,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "receive_count": self.receive_count,
            "attributes": self.attributes(),
            "body": body if body is not None else self.body,
        }


def peek(
    sqs: SQSClient,
    queue: ResolvedQueue,
    max_messages: int = 10,
    *,
    wait_seconds: int = WAIT_SECONDS,
) -> list[DeadLetter]:
    """Up to `max_messages` messages of the queue's DLQ, left in it and visible again."""
    url = queue_url(sqs, queue.dlq_name)
    expected = _visible(sqs, url)
    found: list[DeadLetter] = []
    with _Scan(sqs, url, wait_seconds) as scan:
        while len(found) < max_messages:
            batch = scan.next_batch(min(10, max_messages - len(found)))
            if not batch:
                break
            found += [_dead_letter(m) for m in batch]
            if len(found) >= expected:
                break  # saves the final empty long poll when the count is known
    return found[:max_messages]


# --- redrive -----------------------------------------------------------------------------------


@dataclass
class RedriveResult:
    """What a redrive did; `ok` when every message asked for was moved."""

    source: str
    """Physical name of the queue the messages went back to."""
    redriven: list[tuple[str, str]] = field(default_factory=list)
    """(DLQ message id, new message id in the source queue): every message sent."""
    not_found: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(message id, error): not sent, still in the DLQ."""
    duplicated: list[tuple[str, str]] = field(default_factory=list)
    """(message id, error): sent, but the DLQ delete failed; it is now in both queues."""

    @property
    def ok(self) -> bool:
        return not (self.not_found or self.failed or self.duplicated)


Progress = Callable[[int, int, str, str], None]
"""Called as `(done, total, message id, new message id)` after each message sent."""


def redrive(
    sqs: SQSClient,
    queue: ResolvedQueue,
    message_ids: Collection[str] | None = None,
    *,
    on_progress: Progress | None = None,
    wait_seconds: int = WAIT_SECONDS,
) -> RedriveResult:
    """Move the DLQ's messages back to their source queue: those of `message_ids`, or all.

    Each message is sent to the source queue with its body, message attributes and trace
    header, and deleted from the DLQ only after the send succeeded. Messages that dead-letter
    again during the run (ids this run sent) are left for the next one, so `all` ends.
    `on_progress` is called after each message sent; `total` is the DLQ's approximate depth
    at the start for `all`, and grows if more turn up.
    """
    dlq_url = queue_url(sqs, queue.dlq_name)
    source_url = queue_url(sqs, queue.name)
    wanted = set(message_ids) if message_ids is not None else None
    total = len(wanted) if wanted is not None else _visible(sqs, dlq_url)
    result = RedriveResult(source=queue.name)
    sent_ids: set[str] = set()
    with _Scan(sqs, dlq_url, wait_seconds) as scan:
        while wanted is None or wanted:
            batch = scan.next_batch(10)
            if not batch:
                break
            for message in batch:
                message_id = message["MessageId"]
                if message_id in sent_ids or (wanted is not None and message_id not in wanted):
                    continue  # held until the scan ends, then visible again
                if wanted is not None:
                    wanted.discard(message_id)
                new_id = _move(sqs, scan, source_url, message, result)
                total = max(total, len(result.redriven) + len(result.failed))
                if new_id is not None:
                    sent_ids.add(new_id)
                    if on_progress is not None:
                        on_progress(len(result.redriven), total, message_id, new_id)
    if wanted:
        result.not_found = sorted(wanted)
    return result


def _move(
    sqs: SQSClient,
    scan: _Scan,
    source_url: str,
    message: MessageTypeDef,
    result: RedriveResult,
) -> str | None:
    """Send one message to the source queue, then delete it from the DLQ; its new id."""
    message_id = message["MessageId"]
    try:
        new_id = _send_copy(sqs, source_url, message)
    except (ClientError, BotoCoreError) as error:
        result.failed.append((message_id, str(error)))
        return None  # stays held, then visible again in the DLQ
    try:
        sqs.delete_message(QueueUrl=scan.url, ReceiptHandle=message["ReceiptHandle"])
    except (ClientError, BotoCoreError) as error:
        result.duplicated.append((message_id, str(error)))
    else:
        scan.forget(message_id)
    result.redriven.append((message_id, new_id))
    return new_id


def _send_copy(sqs: SQSClient, url: str, message: MessageTypeDef) -> str:
    attributes = {
        name: _attribute_input(value)
        for name, value in message.get("MessageAttributes", {}).items()
    }
    trace_header = message.get("Attributes", {}).get("AWSTraceHeader")
    if trace_header:
        reply = sqs.send_message(
            QueueUrl=url,
            MessageBody=message["Body"],
            MessageAttributes=attributes,
            MessageSystemAttributes={
                "AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}
            },
        )
    else:
        reply = sqs.send_message(
            QueueUrl=url, MessageBody=message["Body"], MessageAttributes=attributes
        )
    return reply["MessageId"]


def _attribute_input(value: MessageAttributeValueOutputTypeDef) -> MessageAttributeValueTypeDef:
    copied: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
    if "StringValue" in value:
        copied["StringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        copied["BinaryValue"] = value["BinaryValue"]
    return copied


# --- purge -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    """How a DLQ was emptied and how many messages that concerned."""

    method: Literal["purge_queue", "delete_loop"]
    count: int
    """Approximate count before PurgeQueue, or exactly the messages the loop deleted."""


def purge(sqs: SQSClient, queue: ResolvedQueue, *, wait_seconds: int = WAIT_SECONDS) -> PurgeResult:
    """Empty the queue's DLQ with PurgeQueue, or a receive-and-delete loop while it is throttled.

    AWS allows one PurgeQueue per queue every 60 s and may take up to 60 s to finish; messages
    in flight elsewhere survive the loop.
    """
    url = queue_url(sqs, queue.dlq_name)
    before = _visible(sqs, url, in_flight=True)
    try:
        sqs.purge_queue(QueueUrl=url)
    except ClientError as error:
        if _code(error) not in _PURGE_IN_PROGRESS:
            raise
    else:
        return PurgeResult("purge_queue", before)
    deleted = 0
    while True:
        messages = _receive(sqs, url, 10, HOLD_SECONDS, wait_seconds)
        if not messages:
            return PurgeResult("delete_loop", deleted)
        reply = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        deleted += len(reply.get("Successful", []))


# --- helpers -----------------------------------------------------------------------------------


class _Scan:
    """Receives a DLQ batch by batch, holding what it saw invisible; releases it on exit.

    Holding makes each receive return messages not seen yet. A message seen again (its hold
    expired on a very long scan) is not returned twice; a batch of only those ends the scan.
    """

    def __init__(self, sqs: SQSClient, url: str, wait_seconds: int) -> None:
        self.sqs = sqs
        self.url = url
        self.wait_seconds = wait_seconds
        self._held: dict[str, str] = {}  # message id → latest receipt handle
        self._seen: set[str] = set()

    def __enter__(self) -> _Scan:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def next_batch(self, max_messages: int) -> list[MessageTypeDef]:
        messages = _receive(self.sqs, self.url, max_messages, HOLD_SECONDS, self.wait_seconds)
        fresh: list[MessageTypeDef] = []
        for message in messages:
            self._held[message["MessageId"]] = message["ReceiptHandle"]
            if message["MessageId"] not in self._seen:
                self._seen.add(message["MessageId"])
                fresh.append(message)
        return fresh

    def forget(self, message_id: str) -> None:
        """Stop holding a message (it was deleted)."""
        self._held.pop(message_id, None)

    def release(self) -> None:
        """Make every held message visible again."""
        handles = list(self._held.values())
        self._held.clear()
        for chunk in _chunks(handles, 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, handle in enumerate(chunk)
                ],
            )


def _receive(
    sqs: SQSClient, url: str, max_messages: int, visibility: int, wait_seconds: int
) -> list[MessageTypeDef]:
    return sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max_messages,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait_seconds,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])


def _visible(sqs: SQSClient, url: str, *, in_flight: bool = False) -> int:
    names: list[Any] = ["ApproximateNumberOfMessages"]
    if in_flight:
        names.append("ApproximateNumberOfMessagesNotVisible")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def _dead_letter(message: MessageTypeDef) -> DeadLetter:
    system = message.get("Attributes", {})
    sent = _sent_millis(message)
    count = system.get("ApproximateReceiveCount")
    return DeadLetter(
        message_id=message["MessageId"],
        sent_at=datetime.fromtimestamp(sent / 1000, UTC) if sent is not None else None,
        receive_count=int(count) if count is not None else None,
        message_attributes=dict(message.get("MessageAttributes", {})),
        body=message.get("Body", ""),
        trace_header=system.get("AWSTraceHeader"),
    )


def _sent_millis(message: MessageTypeDef) -> int | None:
    sent = message.get("Attributes", {}).get("SentTimestamp")
    return int(sent) if sent is not None else None


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
