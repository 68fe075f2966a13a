"""The local scheduler: when ticks fall (rate and cron, UTC), which are due after a restart, the
run log `eventforge jobs` reads, and ticks reaching the emulator's jobs queues."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import EndpointConnectionError

from eventforge.runtime.provision import ProvisionedTopology
from eventforge.runtime.scheduler import Run, RunLog, Scheduler, TickSender
from eventforge.runtime.schedules import Schedule, format_tick
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY, Job
from tests.fixtures.polling import eventually

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

START = datetime(2026, 12, 7, 23, 40, 30, tzinfo=UTC)
EVERY_MINUTE = Job("every-minute", "rate(1 minute)", "orders", "d")
HOURLY = Job("hourly-job", "rate(1 hour)", "orders", "d")
NIGHTLY = Job("nightly-job", "cron(0 3 * * ? *)", "files", "d")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- schedules ----------------------------------------------------------------------------------


def test_every_job_of_the_topology_has_a_schedule_the_local_scheduler_runs() -> None:
    for job in TOPOLOGY.jobs:
        schedule = Schedule.parse(job.schedule)
        assert schedule.next(START) is not None, job.name


def test_a_rates_ticks_fall_on_whole_multiples_of_its_interval() -> None:
    five = Schedule.parse("rate(5 minutes)")
    assert five.previous(at("2026-12-07 23:44:59")) == at("2026-12-07 23:40:00")
    assert five.previous(at("2026-12-07 23:45:00")) == at("2026-12-07 23:45:00")
    assert five.next(at("2026-12-07 23:45:00")) == at("2026-12-07 23:50:00")
    daily = Schedule.parse("rate(1 day)")
    assert daily.next(START) == at("2026-12-08 00:00:00")


def test_cron_follows_eventbridge_fields_in_utc() -> None:
    weekdays = Schedule.parse("cron(0 3 ? * MON-FRI *)")
    friday = at("2026-12-04 03:00:00")
    assert weekdays.previous(friday) == friday  # a tick at `now` is the latest one
    assert weekdays.next(friday) == at("2026-12-07 03:00:00")  # skips the weekend
    # Days of the week count from Sunday = 1: 2#1 is the first Monday, 6L the last Friday.
    assert Schedule.parse("cron(0 0 ? * 2#1 *)").next(START) == at("2027-01-04 00:00:00")
    assert Schedule.parse("cron(15 10 ? * 6L *)").next(START) == at("2026-12-25 10:15:00")
    assert Schedule.parse("cron(0 0 L * ? *)").next(START) == at("2026-12-31 00:00:00")
    in_2028 = Schedule.parse("cron(0 12 1 1 ? 2028)")
    assert in_2028.next(START) == at("2028-01-01 12:00:00")
    assert in_2028.previous(START) is None


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("cron(0 0 1W * ? *)", "EventBridge-only"),
        ("cron(0 0 * * ? 20x6)", "years"),
        ("cron(61 0 * * ? *)", "Bad minute"),
        ("rate(2 minute)", "say 1 minute"),
        ("every minute", "neither"),
    ],
)
def test_a_schedule_neither_scheduler_runs_is_refused(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Schedule.parse(expression)


def test_a_tick_is_written_as_eventbridge_writes_it() -> None:
    assert format_tick(at("2026-12-07 23:40:00")) == "2026-12-07T23:40:00Z"
    assert format_tick(START.replace(microsecond=250_000)) == "2026-12-07T23:40:30.250Z"


# --- which ticks are due ------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Sends:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failing = False

    def __call__(self, job: Job, tick: datetime) -> str:
        if self.failing:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        self.sent.append((job.name, format_tick(tick)))
        return f"message-{len(self.sent)}"


def _scheduler(tmp_path: Path, clock: Clock, sends: Sends) -> Scheduler:
    runs = RunLog(tmp_path / "scheduler.json")
    return Scheduler((EVERY_MINUTE, HOURLY, NIGHTLY), sends, runs, clock=clock)


def test_a_job_never_run_starts_with_the_first_tick_after_the_start(tmp_path: Path) -> None:
    clock, sends = Clock(START), Sends()
    scheduler = _scheduler(tmp_path, clock, sends)
    assert scheduler.send_due() == 0  # 23:40:00 fell before the scheduler started
    assert scheduler.seconds_to_next() == 5.0  # capped; the next tick is 30 s away
    clock.now = at("2026-12-07 23:40:59.5")
    assert scheduler.seconds_to_next() == pytest.approx(0.5)
    clock.now = at("2026-12-07 23:41:00")
    assert scheduler.send_due() == 1
    assert scheduler.send_due() == 0  # sent once
    clock.now = at("2026-12-08 00:00:10")
    scheduler.send_due()
    assert sends.sent == [
        ("every-minute", "2026-12-07T23:41:00Z"),
        ("every-minute", "2026-12-08T00:00:00Z"),  # the minutes between: the latest only
        ("hourly-job", "2026-12-08T00:00:00Z"),
    ]


def test_a_restart_resumes_from_the_run_log_with_one_catch_up_at_most(tmp_path: Path) -> None:
    clock, sends = Clock(START), Sends()
    first = _scheduler(tmp_path, clock, sends)
    for moment in ("2026-12-08 00:00:00", "2026-12-08 03:00:00"):
        clock.now = at(moment)
        first.send_due()
    assert len(sends.sent) == 5
    # Stopped for a day: each job owes its latest tick, once, not one per tick missed.
    clock.now = at("2026-12-09 04:30:20")
    restarted = _scheduler(tmp_path, clock, sends)
    assert restarted.send_due() == 3
    assert restarted.send_due() == 0
    assert sends.sent[-3:] == [
        ("every-minute", "2026-12-09T04:30:00Z"),
        ("hourly-job", "2026-12-09T04:00:00Z"),
        ("nightly-job", "2026-12-09T03:00:00Z"),
    ]
    runs = RunLog(tmp_path / "scheduler.json").read()
    scheduled = runs["every-minute"].scheduled
    assert scheduled is not None
    assert scheduled.tick == at("2026-12-09 04:30:00")
    assert scheduled.sent_at == clock.now


def test_a_failed_send_leaves_the_tick_due(tmp_path: Path) -> None:
    clock, sends = Clock(START), Sends()
    scheduler = _scheduler(tmp_path, clock, sends)
    clock.now = at("2026-12-07 23:41:00")
    sends.failing = True
    with pytest.raises(EndpointConnectionError):
        scheduler.send_due()
    assert RunLog(tmp_path / "scheduler.json").read() == {}
    sends.failing = False
    assert scheduler.send_due() == 1


def test_the_run_log_keeps_the_last_manual_run_apart(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "data" / "scheduler.json")
    assert log.read() == {}
    log.record("every-minute", Run(at("2026-12-07 23:41:00"), at("2026-12-07 23:41:00.2")))
    manual = Run(at("2026-12-07 23:42:10.5"), at("2026-12-07 23:42:10.5"), manual=True)
    log.record("every-minute", manual)
    runs = log.read()["every-minute"]
    assert runs.last == manual
    assert runs.scheduled is not None
    assert runs.scheduled.tick == at("2026-12-07 23:41:00")
    # A scheduler starting now goes by its own ticks only.
    sends = Sends()
    Scheduler((EVERY_MINUTE,), sends, log, clock=Clock(at("2026-12-07 23:43:01"))).send_due()
    assert sends.sent == [("every-minute", "2026-12-07T23:43:00Z")]
    log.path.write_text("{not json")
    assert log.read() == {}
    log.path.write_text(json.dumps({"jobs": {"every-minute": {"scheduled": {"tick": 3}}}}))
    assert log.read() == {}


# --- against the emulator -----------------------------------------------------------------------


@pytest.mark.integration
def test_the_scheduler_sends_ticks_to_the_jobs_queues_and_outlasts_a_broker_outage(
    aws_settings: Settings, provisioned: ProvisionedTopology, sqs: SQSClient
) -> None:
    real = TickSender(sqs, aws_settings)
    outage = threading.Event()
    outage.set()

    def send(job: Job, tick: datetime) -> str:
        if outage.is_set():
            outage.clear()  # away for the first attempt only
            raise EndpointConnectionError(endpoint_url=aws_settings.aws_endpoint_url or "")
        return real.send(job, tick)

    # A clock a second before a minute's tick, so the test need not wait for one.
    now = datetime.now(UTC)
    shift = now.replace(second=0, microsecond=0) + timedelta(minutes=1, seconds=-1) - now

    def clock() -> datetime:
        return datetime.now(UTC) + shift

    scheduler = Scheduler(TOPOLOGY.jobs, send, RunLog.of(aws_settings), clock=clock)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    url = provisioned.queues["orders-jobs"].url
    received: list[str] = []

    def tick_arrived() -> bool:
        answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        received.extend(m["Body"] for m in answer.get("Messages", []))
        return bool(received)

    try:
        eventually(tick_arrived, timeout=15)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    [body] = received
    assert json.loads(body)["job"] == "order-recovery"
    tick = datetime.fromisoformat(json.loads(body)["tick"])
    assert tick.second == 0
    assert "order-recovery" in RunLog.of(aws_settings).read()
