"""`eventforge queues` and `eventforge dlq ...`: queue depths and dead-letter handling.

A thin layer over `eventforge.runtime.messaging.dlq`; it works on whatever the settings point
at (AWS_ENDPOINT_URL, EVENTFORGE_NAME_PREFIX), the emulator or real AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from eventforge.cli.local_stack import operator_settings
from eventforge.runtime.settings import Settings

if TYPE_CHECKING:
    from eventforge.runtime.messaging.dlq import DeadLetter, QueueStats
    from eventforge.topology import ResolvedQueue, ResolvedTopology


def _names(settings: Settings) -> ResolvedTopology:
    from eventforge.topology import TOPOLOGY

    return TOPOLOGY.resolve_for(settings)


def _queue(settings: Settings, name: str) -> ResolvedQueue:
    from eventforge.runtime.messaging.dlq import UnknownQueueError, find_queue

    try:
        return find_queue(_names(settings), name)
    except UnknownQueueError as error:
        raise click.BadParameter(
            f"unknown queue {name!r}. Valid queues: {', '.join(error.valid)} "
            f"(or their physical names, with prefix {settings.name_prefix!r})",
            param_hint="QUEUE",
        ) from None


@contextmanager
def _aws_errors(settings: Settings) -> Iterator[None]:
    """AWS failures as one readable line (exit 1) instead of a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    from eventforge.runtime.messaging.dlq import QueueMissingError

    where = settings.aws_endpoint_url or f"AWS {settings.aws_region}"
    try:
        yield
    except QueueMissingError as error:
        raise click.ClickException(f"{error} on {where}; run `eventforge provision`?") from None
    except (ClientError, BotoCoreError) as error:
        raise click.ClickException(f"{where}: {error}") from None


def format_age(seconds: float | None) -> str:
    """`42s`, `5m03s`, `2h10m`, `3d04h`; `-` for unknown."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="Print the same data as JSON.")
def queues_command(as_json: bool) -> None:
    """Depth and oldest-message age of every queue and its DLQ.

    Per queue: visible, in flight, delayed, and the age of the oldest message.

    \b
    OLDEST never comes from receiving a main queue: a receive increments the messages'
    ApproximateReceiveCount and pushes them toward the DLQ. So:
    - main queues: CloudWatch's ApproximateAgeOfOldestMessage (latest datapoint of the last
      15 minutes, up to a few minutes old); "-" when there is none, e.g. on the emulator;
    - DLQs: a peek at up to 10 visible messages (VisibilityTimeout=0; a DLQ has no redrive
      policy, so receiving from it has no consequence). A dead letter keeps its original
      enqueue time, so this is the age since the event was first queued; with more than 10
      messages it is a lower bound.
    """
    from eventforge.runtime import aws
    from eventforge.runtime.messaging import dlq

    settings = operator_settings()
    with _aws_errors(settings):
        stats = dlq.queue_stats(
            aws.sqs(settings), _names(settings), cloudwatch=dlq.cloudwatch(settings)
        )
    if as_json:
        document = {
            "prefix": settings.name_prefix,
            "endpoint": settings.aws_endpoint_url,
            "queues": [s.as_dict() for s in stats],
        }
        click.echo(json.dumps(document, indent=2))
        return
    where = settings.aws_endpoint_url or f"AWS {settings.aws_region}"
    click.echo(f"queues with prefix {settings.name_prefix!r} on {where}")
    click.echo(_table(stats))
    dead = [s for s in stats if s.is_dlq and s.visible]
    if dead:
        letters = sum(s.visible or 0 for s in dead)
        click.echo(
            f"\n{letters} dead letter{'s' if letters != 1 else ''} in "
            f"{', '.join(s.name for s in dead)}; inspect with `eventforge dlq show "
            f"{dead[0].source}`"
        )


def _table(stats: list[QueueStats]) -> str:
    def count(value: int | None, exists: bool) -> str:
        return str(value) if exists and value is not None else "-"

    header = ("QUEUE", "VISIBLE", "IN-FLIGHT", "DELAYED", "OLDEST")
    rows = [
        (
            s.name if s.exists else f"{s.name} (missing)",
            count(s.visible, s.exists),
            count(s.in_flight, s.exists),
            count(s.delayed, s.exists),
            format_age(s.oldest_age_seconds),
        )
        for s in stats
    ]
    name_w = max(len(r[0]) for r in [header, *rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(1, 5)]
    lines = []
    for row in [header, *rows]:
        numbers = "  ".join(cell.rjust(w) for cell, w in zip(row[1:], widths, strict=True))
        lines.append(f"{row[0]:<{name_w}}  {numbers}")
    return "\n".join(lines)


@click.group("dlq")
def dlq_group() -> None:
    """Inspect, redrive and purge dead-letter queues.

    QUEUE is a queue's logical name (`eventforge queues` lists them, e.g. files-uploads,
    orders-orders); its `-dlq` name and physical names are accepted too. Every command acts
    on that queue's DLQ.
    """


@dlq_group.command("show")
@click.argument("queue")
@click.option("--max", "max_messages", default=10, show_default=True, type=click.IntRange(1))
def dlq_show_command(queue: str, max_messages: int) -> None:
    """Show QUEUE's DLQ messages without consuming them.

    Shows up to --max messages: id, sent time, receive count, attributes and body.

    Messages are received with a short visibility timeout and made visible again at once.
    Each peek counts as a receive in ApproximateReceiveCount (harmless on a DLQ).
    """
    from eventforge.runtime import aws
    from eventforge.runtime.messaging import dlq

    settings = operator_settings()
    resolved = _queue(settings, queue)
    with _aws_errors(settings):
        letters = dlq.peek(aws.sqs(settings), resolved, max_messages)
    logical = resolved.spec.name
    if not letters:
        click.echo(f"{logical}-dlq ({resolved.dlq_name}) is empty")
        return
    click.echo(
        f"{logical}-dlq ({resolved.dlq_name}): {len(letters)} message"
        f"{'s' if len(letters) != 1 else ''} shown and left in the queue; sent = first "
        "enqueued; receive counts include peeks like this one"
    )
    for number, letter in enumerate(letters, 1):
        click.echo("")
        click.echo(_describe(number, len(letters), letter))


def _describe(number: int, total: int, letter: DeadLetter) -> str:
    lines = [f"[{number}/{total}] message {letter.message_id}"]
    if letter.sent_at is not None:
        age = (datetime.now(UTC) - letter.sent_at).total_seconds()
        sent = letter.sent_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        lines.append(f"  sent       {sent} ({format_age(max(0.0, age))} ago)")
    receives = "?" if letter.receive_count is None else str(letter.receive_count)
    lines.append(f"  receives   {receives}")
    attributes = letter.attributes()
    if attributes:
        lines.append("  attributes")
        width = max(len(name) for name in attributes)
        lines += [f"    {name:<{width}}  {value}" for name, value in attributes.items()]
    else:
        lines.append("  attributes (none)")
    body = letter.body_json()
    text = letter.body if body is None else json.dumps(body, indent=2, ensure_ascii=False)
    lines.append("  body" + ("" if body is not None else " (not JSON)"))
    lines += [f"    {line}" for line in text.splitlines() or [""]]
    return "\n".join(lines)


@dlq_group.command("redrive")
@click.argument("queue")
@click.option(
    "--id",
    "message_ids",
    multiple=True,
    metavar="ID",
    help="SQS MessageId (as `dlq show` prints it); repeat for several.",
)
@click.option("--all", "redrive_all", is_flag=True, help="Redrive every message of the DLQ.")
def dlq_redrive_command(queue: str, message_ids: tuple[str, ...], redrive_all: bool) -> None:
    """Move DLQ messages back to QUEUE: --id ID... or --all.

    Each message is sent to the source queue with its body and message attributes, and
    deleted from the DLQ only after that send succeeded. Exits 1 if an id is not found or a
    message could not be moved.
    """
    from eventforge.runtime import aws
    from eventforge.runtime.messaging import dlq

    if bool(message_ids) == redrive_all:
        raise click.UsageError("give either --id ID (one or more) or --all")
    settings = operator_settings()
    resolved = _queue(settings, queue)
    logical = resolved.spec.name

    def progress(done: int, total: int, message_id: str, new_id: str) -> None:
        click.echo(f"redriven {done}/{total}  {message_id} → {logical} as {new_id}")

    started = time.monotonic()
    with _aws_errors(settings):
        result = dlq.redrive(
            aws.sqs(settings), resolved, list(message_ids) or None, on_progress=progress
        )
    for message_id, error in result.failed:
        click.echo(f"failed (still in the DLQ): {message_id}: {error}", err=True)
    for message_id, error in result.duplicated:
        click.echo(
            f"sent but not deleted from the DLQ (now in both queues): {message_id}: {error}",
            err=True,
        )
    if result.not_found:
        click.echo(f"not found in {logical}-dlq: {', '.join(result.not_found)}", err=True)
    count = len(result.redriven)
    click.echo(
        f"redriven {count} message{'s' if count != 1 else ''} from {logical}-dlq to {logical} "
        f"in {time.monotonic() - started:.1f}s"
        + ("" if result.ok else "; some were not, see above")
    )
    if not result.ok:
        raise SystemExit(1)


@dlq_group.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge_command(queue: str, yes: bool) -> None:
    """Delete every message of QUEUE's DLQ, for good.

    Uses PurgeQueue; when AWS refuses it (one purge per queue every 60 s), deletes the
    messages by receiving them instead.
    """
    from eventforge.runtime import aws
    from eventforge.runtime.messaging import dlq

    settings = operator_settings()
    resolved = _queue(settings, queue)
    logical = resolved.spec.name
    sqs = aws.sqs(settings)
    if not yes:
        with _aws_errors(settings):
            count = dlq.depth(sqs, resolved)
        click.confirm(
            f"Permanently delete the ~{count} message{'s' if count != 1 else ''} of "
            f"{logical}-dlq ({resolved.dlq_name})?",
            abort=True,
        )
    with _aws_errors(settings):
        result = dlq.purge(sqs, resolved)
    if result.method == "purge_queue":
        click.echo(
            f"purged {logical}-dlq (about {result.count} message"
            f"{'s' if result.count != 1 else ''}; AWS may take up to 60 s to finish)"
        )
    else:
        click.echo(
            f"PurgeQueue is throttled; deleted {result.count} message"
            f"{'s' if result.count != 1 else ''} of {logical}-dlq one by one"
        )
