"""Every scheduled job of the topology is a schedule sending its tick to its own jobs queue."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import json

import pulumi
import pytest

from eventforge.topology import TOPOLOGY
from infra.components.schedules import (
    MAXIMUM_EVENT_AGE_SECONDS,
    MAXIMUM_RETRY_ATTEMPTS,
    SCHEDULED_TIME,
)
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import STACKS, Deploy
from tests.infra.graph import (
    EVENT_RULE,
    EVENT_TARGET,
    QUEUE,
    QUEUE_POLICY,
    ROLE,
    SCHEDULE,
    SCHEDULE_GROUP,
    SUBSCRIPTION,
    grants,
)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_each_job_is_a_schedule_that_sends_its_tick_to_its_jobs_queue_and_dead_letters_there(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    prefix = deployment.settings.name_prefix

    def check() -> None:
        [group] = cloud.of_type(SCHEDULE_GROUP)
        assert group.inputs["name"] == prefix
        schedules = {s.inputs["name"]: s for s in cloud.of_type(SCHEDULE)}
        assert set(schedules) == {job.name for job in TOPOLOGY.jobs}
        for job in TOPOLOGY.jobs:
            inputs = schedules[job.name].inputs
            resolved = deployment.names.queues[job.queue]
            queue = cloud.by_state(QUEUE, "name", resolved.name)
            dlq = cloud.by_state(QUEUE, "name", resolved.dlq_name)
            assert inputs["groupName"] == prefix
            assert inputs["scheduleExpression"] == job.schedule
            assert inputs["scheduleExpressionTimezone"] == "UTC"
            assert inputs["flexibleTimeWindow"] == {"mode": "OFF"}
            assert inputs["state"] == "ENABLED"
            target = inputs["target"]
            assert target["arn"] == queue.state["arn"]
            # The one body the local scheduler sends too, with the tick's time filled in per tick.
            assert target["input"] == job.tick_body("<aws.scheduler.scheduled-time>")
            assert json.loads(target["input"])["tick"] == SCHEDULED_TIME
            assert target["deadLetterConfig"] == {"arn": dlq.state["arn"]}
            assert target["retryPolicy"] == {
                "maximumEventAgeInSeconds": MAXIMUM_EVENT_AGE_SECONDS,
                "maximumRetryAttempts": MAXIMUM_RETRY_ATTEMPTS,
            }
            assert 60 <= MAXIMUM_EVENT_AGE_SECONDS <= 86_400
            assert 0 < MAXIMUM_RETRY_ATTEMPTS <= 185
            # The queue is fed by its schedules only: no topic, no queue policy.
            assert not [s for s in cloud.of_type(SUBSCRIPTION) if s.inputs["endpoint"] == queue.id]
            assert not [p for p in cloud.of_type(QUEUE_POLICY) if p.inputs["queueUrl"] == queue.id]
            # Its DLQ counts ticks never delivered and ticks the workers failed alike; the
            # queue's alarm on it (tested with every queue's) is the only one.

    return deployment.settled(check)


@pulumi.runtime.test
def test_a_schedule_role_may_send_to_its_own_jobs_queue_and_dlq_only_for_this_group(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("prod")
    cloud = deployment.cloud

    def check() -> None:
        [group] = cloud.of_type(SCHEDULE_GROUP)
        roles = {r.state["arn"]: r for r in cloud.of_type(ROLE)}
        targets = {job.queue for job in TOPOLOGY.jobs}
        used = set()
        for schedule in cloud.of_type(SCHEDULE):
            target = schedule.inputs["target"]
            role = roles[target["roleArn"]]
            used.add(role.name)
            [trust] = role.json("assumeRolePolicy")["Statement"]
            assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
            assert trust["Action"] == "sts:AssumeRole"
            assert trust["Condition"] == {
                "StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": group.state["arn"]}
            }
            assert grants(cloud, role.name) == {
                "sqs:SendMessage": {target["arn"], target["deadLetterConfig"]["arn"]}
            }
        # One role per jobs queue, shared by that queue's schedules only.
        assert len(used) == len(targets)

    return deployment.settled(check)


@pulumi.runtime.test
def test_no_eventbridge_rule_invokes_a_lambda_consumer_any_more(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")
    cloud = deployment.cloud
    assert deployment.settings.lambda_consumers

    def check() -> None:
        assert not cloud.of_type(EVENT_RULE)
        assert not cloud.of_type(EVENT_TARGET)

    return deployment.settled(check)
