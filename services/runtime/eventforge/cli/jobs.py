"""`eventforge jobs`, `eventforge jobs run NAME` and `eventforge scheduler`: the scheduled jobs.

The jobs are declared once, in the topology (`TOPOLOGY.jobs`); in the cloud EventBridge
Scheduler sends their ticks, locally the one `eventforge scheduler` process `eventforge up` runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from eventforge.cli.queues import format_age
from eventforge.runtime.settings import Settings
from eventforge.trace_edges import SCHEDULER

if TYPE_CHECKING:
    from eventforge.runtime.scheduler import JobRuns
    from eventforge.topology import Job

README_BEGIN = "<!-- jobs:begin -->"
README_END = "<!-- jobs:end -->"


@click.group("jobs", invoke_without_command=True)
@click.option("--markdown", is_flag=True, help="Print the README's jobs table instead.")
@click.pass_context
def jobs_group(context: click.Context, markdown: bool) -> None:
    """The scheduled jobs: name, target, schedule, last and next run, description.

    LAST RUN is the last tick the local scheduler (or `jobs run`, marked "by hand") sent, from
    <data dir>/scheduler.json; NEXT RUN is the schedule's next tick, in UTC.
    """
    if context.invoked_subcommand is not None:
        return
    from eventforge.runtime.scheduler import RunLog
    from eventforge.topology import TOPOLOGY

    if markdown:
        click.echo(jobs_markdown(TOPOLOGY.jobs), nl=False)
        return
    runs = RunLog.of(Settings())
    click.echo(f"last runs as the local scheduler recorded them in {runs.path}", err=True)
    click.echo(jobs_table(TOPOLOGY.jobs, runs.read(), datetime.now(UTC)))


def jobs_table(jobs: tuple[Job, ...], runs: dict[str, JobRuns], now: datetime) -> str:
    """The table `eventforge jobs` prints."""
    from eventforge.runtime.schedules import Schedule

    header = ("JOB", "TARGET", "SCHEDULE", "LAST RUN", "NEXT RUN", "DESCRIPTION")
    rows = [header]
    for job in jobs:
        last = runs[job.name].last if job.name in runs else None
        upcoming = Schedule.parse(job.schedule).next(now)
        last_text = "-"
        if last is not None:
            ago = format_age(max((now - last.sent_at).total_seconds(), 0.0))
            last_text = f"{_minute(last.tick)} ({ago} ago{', by hand' if last.manual else ''})"
        next_text = "-"
        if upcoming is not None:
            next_text = f"{_minute(upcoming)} (in {format_age((upcoming - now).total_seconds())})"
        rows.append((job.name, job.target, job.schedule, last_text, next_text, job.description))
    # Every column but the last (the description) padded to its widest cell.
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )


def jobs_markdown(jobs: tuple[Job, ...]) -> str:
    """The README's table of the jobs (between `README_BEGIN` and `README_END`)."""
    lines = ["| job | target | schedule (UTC) | does |", "|---|---|---|---|"]
    lines += [f"| `{j.name}` | {j.target} | `{j.schedule}` | {j.description} |" for j in jobs]
    return "\n".join(lines) + "\n"


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@jobs_group.command("run")
@click.argument("name")
def jobs_run_command(name: str) -> None:
    """Send one tick of job NAME now, to its service's jobs queue.

    The tick's time is now (to the millisecond), so it is a tick of its own, run once like any
    other. It carries a request id and the trace context of its send: `eventforge trace
    REQUEST_ID` shows the job's run.
    """
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    from eventforge.cli.local_stack import operator_settings
    from eventforge.cli.queues import _aws_errors
    from eventforge.runtime import aws
    from eventforge.runtime.context import REQUEST_ID_KEY, new_request_id, request_context
    from eventforge.runtime.messaging.envelope import REQUEST_ID
    from eventforge.runtime.scheduler import Run, RunLog, TickSender
    from eventforge.runtime.schedules import format_tick
    from eventforge.runtime.telemetry import configure_telemetry
    from eventforge.topology import TOPOLOGY

    try:
        job = TOPOLOGY.job(name)
    except KeyError:
        names = ", ".join(j.name for j in TOPOLOGY.jobs)
        raise click.BadParameter(f"no job {name!r}. Jobs: {names}", param_hint="NAME") from None
    settings = operator_settings()
    sender = TickSender(aws.sqs(settings), settings)
    queue = sender.queue_name(job)
    tick = datetime.now(UTC)
    request_id = new_request_id()
    telemetry = configure_telemetry(SCHEDULER, settings, set_global=False)
    try:
        with (
            request_context(request_id),
            telemetry.tracer.start_as_current_span(
                f"{queue} send",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "aws_sqs",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": queue,
                    "eventforge.job.name": job.name,
                    "eventforge.job.tick": format_tick(tick),
                    REQUEST_ID_KEY: request_id,
                },
            ) as span,
            _aws_errors(settings),
        ):
            attributes = {REQUEST_ID: request_id}
            propagate.inject(attributes, context=trace.set_span_in_context(span))
            message_id = sender.send(job, tick, attributes)
    finally:
        telemetry.shutdown()
    RunLog.of(settings).record(job.name, Run(tick, datetime.now(UTC), manual=True))
    click.echo(
        f"sent tick {format_tick(tick)} of {job.name} to {queue} (message {message_id})\n"
        f"request id {request_id}: `eventforge trace {request_id}` shows its run"
    )


@click.command("scheduler")
def scheduler_command() -> None:
    """Send each job's ticks to its queue on its schedule (what `eventforge up` runs, once).

    The local stand-in for EventBridge Scheduler: rate and cron schedules in UTC; each job's
    last tick is kept in <data dir>/scheduler.json, and after a restart only the latest missed
    tick of a job is sent. Stops on SIGTERM or SIGINT.
    """
    from eventforge.runtime.logs import configure_logging
    from eventforge.runtime.scheduler import run_scheduler
    from eventforge.runtime.signals import stop_on_signals

    settings = Settings()
    configure_logging(SCHEDULER, settings.log_level)
    run_scheduler(settings, stop_on_signals())
