"""`eventforge jobs` and `eventforge jobs run NAME` against the emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from eventforge.cli import main
from eventforge.cli.jobs import README_BEGIN, README_END, jobs_markdown, jobs_table
from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.scheduler import JobRuns, Run, RunLog
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import read_span_file
from eventforge.topology import TOPOLOGY

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

NOW = datetime(2026, 12, 7, 23, 40, 30, tzinfo=UTC)


def test_the_table_has_each_job_with_its_last_and_next_run() -> None:
    recovery = TOPOLOGY.job("order-recovery")
    runs = {
        recovery.name: JobRuns(
            scheduled=Run(datetime(2026, 12, 7, 23, 40, tzinfo=UTC), NOW.replace(second=0))
        ),
        "orders-retention": JobRuns(manual=Run(NOW, NOW.replace(second=32), manual=True)),
    }
    lines = jobs_table(TOPOLOGY.jobs, runs, NOW.replace(second=35)).splitlines()

    assert lines[0].split() == [
        "JOB",
        "TARGET",
        "SCHEDULE",
        "LAST",
        "RUN",
        "NEXT",
        "RUN",
        "DESCRIPTION",
    ]
    assert len(lines) == 1 + len(TOPOLOGY.jobs)
    [row] = [line for line in lines if line.startswith("order-recovery ")]
    assert "orders    rate(1 minute)" in row
    assert "2026-12-07 23:40:00Z (35s ago)" in row
    assert "2026-12-07 23:41:00Z (in 25s)" in row
    assert row.endswith(recovery.description)
    [retention] = [line for line in lines if line.startswith("orders-retention ")]
    assert "2026-12-07 23:40:30Z (3s ago, by hand)" in retention
    assert "2026-12-08 00:00:00Z (in 19m25s)" in retention
    [never] = [line for line in lines if line.startswith("files-retention ")]
    assert never.split()[4] == "-"  # never run


@pytest.mark.integration
def test_jobs_lists_what_the_scheduler_recorded(cli: CliRunner, aws_settings: Settings) -> None:
    tick = datetime.now(UTC).replace(second=0, microsecond=0)
    RunLog.of(aws_settings).record("delivery-retries", Run(tick, datetime.now(UTC)))
    result = cli.invoke(main, ["jobs"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if line.startswith("delivery-retries")]
    assert tick.strftime("%Y-%m-%d %H:%M:%SZ") in row
    assert str(aws_settings.data_dir / "scheduler.json") in result.stderr


@pytest.mark.integration
def test_jobs_run_sends_one_tick_now_with_its_trace(
    cli: CliRunner, aws_settings: Settings, provisioned: ProvisionedTopology, sqs: SQSClient
) -> None:
    result = cli.invoke(main, ["jobs", "run", "upload-expiry-sweep"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    url = provisioned.queues["files-jobs"].url
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"])[
        "Messages"
    ]
    body = json.loads(message["Body"])
    assert body["job"] == "upload-expiry-sweep"
    assert f"sent tick {body['tick']} of upload-expiry-sweep to eventforge-test-files-jobs" in (
        result.stdout
    )
    assert f"(message {message['MessageId']})" in result.stdout
    tick = datetime.fromisoformat(body["tick"])
    assert abs((datetime.now(UTC) - tick).total_seconds()) < 30
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    request_id = attributes["request_id"]
    assert f"`eventforge trace {request_id}`" in result.stdout
    [send] = [s for s in read_span_file(aws_settings.spans_path) if s["request_id"] == request_id]
    assert (send["kind"], send["name"]) == ("PRODUCER", "eventforge-test-files-jobs send")
    assert attributes["traceparent"].split("-")[1:3] == [send["trace_id"], send["span_id"]]
    manual = RunLog.of(aws_settings).read()["upload-expiry-sweep"].manual
    assert manual is not None
    assert manual.tick == tick


@pytest.mark.integration
def test_jobs_run_of_an_unknown_job_lists_the_jobs(cli: CliRunner) -> None:
    result = cli.invoke(main, ["jobs", "run", "nightly-bogus"])
    assert result.exit_code == 2
    assert "no job 'nightly-bogus'. Jobs: order-recovery, orders-retention" in result.output


def test_the_readme_holds_the_current_jobs_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.find(README_BEGIN)
    end = readme.find(README_END, start)
    assert 0 <= start < end, f"README.md has no {README_BEGIN} … {README_END} block"
    assert (
        readme[start + len(README_BEGIN) : end].strip() == jobs_markdown(TOPOLOGY.jobs).strip()
    ), (
        "README.md's jobs table is stale: paste the output of `eventforge jobs --markdown` "
        f"between {README_BEGIN} and {README_END}"
    )
