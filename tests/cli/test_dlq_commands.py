"""`eventforge queues` and `eventforge dlq ...` against the emulator."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result

from eventforge.cli import main
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.fixtures.emulator import queue_depth

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

pytestmark = pytest.mark.integration

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _run(cli: CliRunner, *args: str, answer: str | None = None) -> Result:
    return cli.invoke(main, list(args), input=answer, catch_exceptions=False)


def _attributes(event_type: str, request_id: str) -> dict[str, MessageAttributeValueTypeDef]:
    return {
        "event_type": {"DataType": "String", "StringValue": event_type},
        "request_id": {"DataType": "String", "StringValue": request_id},
        "traceparent": {"DataType": "String", "StringValue": TRACEPARENT},
    }


def _envelope(number: int) -> str:
    """A body shaped like our protobuf-JSON envelopes."""
    return json.dumps(
        {
            "eventId": f"00000000-0000-0000-0000-{number:012d}",
            "eventType": "order.placed",
            "source": "orders",
            "subject": f"order-{number}",
            "requestId": f"req-{number}",
            "orderPlaced": {"orderId": f"order-{number}"},
        },
        separators=(",", ":"),
    )


def _dead_letters(sqs: SQSClient, url: str, count: int) -> list[str]:
    """Send `count` envelopes straight to a DLQ; their message ids, in order."""
    return [
        sqs.send_message(
            QueueUrl=url,
            MessageBody=_envelope(n),
            MessageAttributes=_attributes("order.placed", f"req-{n}"),
        )["MessageId"]
        for n in range(count)
    ]


def _drain(sqs: SQSClient, url: str) -> list[MessageTypeDef]:
    drained: list[MessageTypeDef] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
    ).get("Messages", []):
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        drained += batch
    return drained


def _table(output: str) -> dict[str, list[str]]:
    """`queues` output as {queue: [visible, in-flight, delayed, oldest]}."""
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) == 5 and cells[0] != "QUEUE":
            rows[cells[0]] = cells[1:]
    return rows


def test_queues_lists_every_queue_and_dlq_with_visible_counts(
    cli: CliRunner, sqs: SQSClient, provisioned: ProvisionedTopology, aws_settings: Settings
) -> None:
    queues = provisioned.queues
    _drain(sqs, queues["files-uploads"].url)  # the s3:TestEvent of the notification set-up
    for _ in range(2):
        sqs.send_message(QueueUrl=queues["orders-orders"].url, MessageBody="{}")
    sqs.send_message(QueueUrl=queues["notifier-files"].url, MessageBody="{}")
    _dead_letters(sqs, queues["files-uploads"].dlq_url, 3)
    expected = {name: 0 for q in TOPOLOGY.queues for name in (q.name, f"{q.name}-dlq")}
    expected |= {"orders-orders": 2, "notifier-files": 1, "files-uploads-dlq": 3}

    result = _run(cli, "queues")

    assert result.exit_code == 0, result.output
    table = _table(result.output)
    assert {name: int(cells[0]) for name, cells in table.items()} == expected
    assert all(cells[1:3] == ["0", "0"] for cells in table.values())
    assert table["orders-orders"][3] == "-"  # no CloudWatch datapoints on the emulator
    assert table["files-uploads-dlq"][3] != "-"  # peeked
    assert "eventforge dlq show files-uploads" in result.output
    assert queue_depth(sqs, queues["files-uploads"].dlq_url) == (3, 0)  # the peek hid nothing
    assert result.stderr.startswith(
        f"acting on {aws_settings.aws_endpoint_url} (AWS_ENDPOINT_URL): account 123456789012, "
        f"region {aws_settings.aws_region}, prefix {aws_settings.name_prefix!r}"
    )

    as_json = _run(cli, "queues", "--json")

    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)  # the stack it acts on is said on stderr
    assert document["prefix"] == aws_settings.name_prefix
    by_name = {q["name"]: q for q in document["queues"]}
    assert {name: q["visible"] for name, q in by_name.items()} == expected
    assert by_name["files-uploads-dlq"]["oldest_age_source"] == "peek"
    assert by_name["files-uploads-dlq"]["source"] == "files-uploads"
    assert by_name["orders-orders"]["oldest_age_seconds"] is None


def test_dlq_show_prints_messages_with_attributes_and_body_and_leaves_them(
    cli: CliRunner, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    dlq_url = provisioned.queues["orders-orders"].dlq_url
    ids = _dead_letters(sqs, dlq_url, 2)
    sqs.send_message(QueueUrl=dlq_url, MessageBody="not json at all")

    result = _run(cli, "dlq", "show", "orders-orders")

    assert result.exit_code == 0, result.output
    output = result.output
    assert all(f"message {message_id}" in output for message_id in ids)
    assert "event_type   order.placed" in output
    assert "request_id   req-1" in output
    assert f"traceparent  {TRACEPARENT}" in output
    assert '      "eventType": "order.placed",' in output  # pretty-printed, indented
    assert '"subject": "order-0"' in output
    assert "body (not JSON)\n    not json at all" in output
    assert "receives   1" in output
    assert output.count("  sent       ") == 3
    assert queue_depth(sqs, dlq_url) == (3, 0)  # still there, and visible at once

    limited = _run(cli, "dlq", "show", "orders-orders-dlq", "--max", "1")

    assert limited.exit_code == 0, limited.output
    assert limited.output.count("] message ") == 1
    assert queue_depth(sqs, dlq_url) == (3, 0)


def test_dlq_show_accepts_physical_names_and_reports_an_empty_dlq(
    cli: CliRunner, aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    physical = f"{aws_settings.name_prefix}-files-uploads"

    for name in (physical, f"{physical}-dlq"):
        result = _run(cli, "dlq", "show", name)

        assert result.exit_code == 0, result.output
        assert "files-uploads-dlq" in result.output
        assert "is empty" in result.output


def test_dlq_redrive_by_id_moves_exactly_that_message_then_all_moves_the_rest(
    cli: CliRunner, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["notifier-orders"]
    ids = _dead_letters(sqs, queue.dlq_url, 3)

    one = _run(cli, "dlq", "redrive", "notifier-orders", "--id", ids[1])

    assert one.exit_code == 0, one.output
    assert "redriven 1/1" in one.output
    assert "redriven 1 message from notifier-orders-dlq to notifier-orders" in one.output
    assert queue_depth(sqs, queue.dlq_url) == (2, 0)
    [moved] = _drain(sqs, queue.url)
    assert moved["Body"] == _envelope(1)
    assert {name: value["StringValue"] for name, value in moved["MessageAttributes"].items()} == {
        "event_type": "order.placed",
        "request_id": "req-1",
        "traceparent": TRACEPARENT,
    }

    rest = _run(cli, "dlq", "redrive", "notifier-orders", "--all")

    assert rest.exit_code == 0, rest.output
    assert "redriven 2/2" in rest.output
    assert queue_depth(sqs, queue.dlq_url) == (0, 0)
    moved_rest = _drain(sqs, queue.url)
    assert sorted(m["Body"] for m in moved_rest) == [_envelope(0), _envelope(2)]
    assert all(m["MessageAttributes"]["traceparent"]["StringValue"] for m in moved_rest)


def test_dlq_redrive_reports_unknown_ids_and_moves_only_the_known_ones(
    cli: CliRunner, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    queue = provisioned.queues["files-orders"]
    ids = _dead_letters(sqs, queue.dlq_url, 2)

    result = _run(cli, "dlq", "redrive", "files-orders", "--id", ids[0], "--id", "no-such-id")

    assert result.exit_code == 1
    assert "not found in files-orders-dlq: no-such-id" in result.output
    assert "redriven 1/2" in result.output
    assert queue_depth(sqs, queue.dlq_url) == (1, 0)  # the other one is visible again
    assert [m["Body"] for m in _drain(sqs, queue.url)] == [_envelope(0)]


def test_dlq_redrive_needs_ids_or_all(cli: CliRunner, provisioned: ProvisionedTopology) -> None:
    neither = _run(cli, "dlq", "redrive", "files-orders")
    both = _run(cli, "dlq", "redrive", "files-orders", "--all", "--id", "x")

    assert neither.exit_code == both.exit_code == 2
    assert "--all" in neither.output


def test_dlq_purge_asks_first_and_keeps_messages_when_refused(
    cli: CliRunner, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    dlq_url = provisioned.queues["orders-orders"].dlq_url
    _dead_letters(sqs, dlq_url, 2)

    refused = _run(cli, "dlq", "purge", "orders-orders", answer="n\n")

    assert refused.exit_code != 0
    assert "Permanently delete the ~2 messages of orders-orders-dlq" in refused.output
    assert queue_depth(sqs, dlq_url) == (2, 0)

    purged = _run(cli, "dlq", "purge", "orders-orders", "--yes")

    assert purged.exit_code == 0, purged.output
    assert "purged orders-orders-dlq" in purged.output
    assert queue_depth(sqs, dlq_url) == (0, 0)


def test_dlq_purge_deletes_one_by_one_while_purge_queue_is_throttled(
    cli: CliRunner, sqs: SQSClient, provisioned: ProvisionedTopology
) -> None:
    dlq_url = provisioned.queues["orders-orders"].dlq_url
    assert _run(cli, "dlq", "purge", "orders-orders", "--yes").exit_code == 0
    _dead_letters(sqs, dlq_url, 3)

    again = _run(cli, "dlq", "purge", "orders-orders", "--yes")  # within 60 s of the first

    assert again.exit_code == 0, again.output
    assert "deleted 3 messages of orders-orders-dlq one by one" in again.output
    assert queue_depth(sqs, dlq_url) == (0, 0)


@pytest.mark.parametrize(
    "command",
    [("dlq", "show"), ("dlq", "redrive", "--all"), ("dlq", "purge", "--yes")],
    ids=["show", "redrive", "purge"],
)
def test_an_unknown_queue_exits_2_listing_the_valid_ones(
    cli: CliRunner, command: tuple[str, ...]
) -> None:
    result = _run(cli, *command, "orders-typo")

    assert result.exit_code == 2
    assert "unknown queue 'orders-typo'" in result.output
    for queue in TOPOLOGY.queues:
        assert queue.name in result.output
