"""The topology's scheduled jobs: EventBridge Scheduler sends each tick to its jobs queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.topology import Job
from infra.access import schedule_grants
from infra.iam import service_role

SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
"""The context attribute Scheduler replaces, per tick, with the tick's scheduled time (UTC,
ISO 8601): the tick's id, so a worker handles each tick once."""
TIMEZONE = "UTC"
MAXIMUM_EVENT_AGE_SECONDS = 900
"""How long Scheduler retries sending a tick before it dead-letters it (AWS: 60..86400)."""
MAXIMUM_RETRY_ATTEMPTS = 5
"""How many times it retries sending within that age (AWS: 0..185)."""


@dataclass(frozen=True)
class JobsQueue:
    """A service's jobs queue: where its ticks go, and the DLQ for those that cannot."""

    arn: pulumi.Input[str]
    dlq_arn: pulumi.Input[str]


@dataclass
class SchedulesArgs:
    """The jobs and each one's jobs queue, by the queue's logical name (`Job.queue`)."""

    name_prefix: str
    account_id: str
    jobs: Sequence[Job]
    queues: Mapping[str, JobsQueue]


class Schedules(pulumi.ComponentResource):
    """The stack's schedule group (named by its prefix), one schedule per job, and one execution
    role per jobs queue.

    Each schedule fires exactly on its expression (no flexible window), in UTC, and sends the
    job's tick body with `<aws.scheduler.scheduled-time>` to the target service's jobs queue. A
    tick it cannot send within its retry policy goes to that queue's DLQ, as does one the
    workers fail `maxReceiveCount` times: the DLQ's depth alarm covers both. A role may only be
    assumed by Scheduler for this account's group, and may only send to its own queue and DLQ.
    """

    group_name: pulumi.Output[str]
    schedule_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: SchedulesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Schedules", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.scheduler.ScheduleGroup(f"{name}-group", name=args.name_prefix, opts=child)
        roles = {
            queue: service_role(
                f"{name}-{queue}-role",
                principal=SCHEDULER_PRINCIPAL,
                grants=schedule_grants(target.arn, target.dlq_arn),
                account_id=args.account_id,
                source_arn=group.arn,
                parent=self,
            )
            for queue, target in sorted(args.queues.items())
            if any(job.queue == queue for job in args.jobs)
        }
        self.schedule_arns = {}
        for job in args.jobs:
            target, role = args.queues[job.queue], roles[job.queue]
            schedule = aws.scheduler.Schedule(
                f"{name}-{job.name}",
                name=job.name,
                group_name=group.name,
                description=job.description,
                schedule_expression=job.schedule,
                schedule_expression_timezone=TIMEZONE,
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                state="ENABLED",
                target=aws.scheduler.ScheduleTargetArgs(
                    arn=target.arn,
                    role_arn=role.role.arn,
                    input=job.tick_body(SCHEDULED_TIME),
                    retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                        maximum_event_age_in_seconds=MAXIMUM_EVENT_AGE_SECONDS,
                        maximum_retry_attempts=MAXIMUM_RETRY_ATTEMPTS,
                    ),
                    dead_letter_config=aws.scheduler.ScheduleTargetDeadLetterConfigArgs(
                        arn=target.dlq_arn
                    ),
                ),
                # A tick sent before the role's policy exists would fail and be dead-lettered.
                opts=pulumi.ResourceOptions(parent=self, depends_on=role.dependencies()),
            )
            self.schedule_arns[job.name] = schedule.arn
        self.group_name = group.name
        self.register_outputs({"group_name": self.group_name, "schedule_arns": self.schedule_arns})
