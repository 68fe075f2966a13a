"""The cost estimate: exact prices of hand-made graphs, and every stack's own graph priced."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pulumi
import pytest

from eventforge.topology import TOPOLOGY
from infra import cost
from infra.config import ConfigError
from infra.cost import (
    Estimate,
    StackEstimate,
    UnpricedResourceError,
    estimate,
    estimate_stack,
    load_prices,
    readme_block,
    readme_table_is_current,
    render,
)
from infra.offline import MockCloud, Record, build_offline
from tests.infra.conftest import ROOT, STACKS

HOURS = Decimal(730)


@pytest.fixture(autouse=True)
def _runtime_settled() -> Iterator[None]:
    """Run what the runtime fixture started (its root stack's registration) to its end.

    These tests run no Pulumi program on the fixture's loop, so that registration would
    otherwise be collected pending, and Python 3.11 can fail a compile it interrupts.
    """
    yield
    loop = asyncio.get_event_loop()
    pending = asyncio.all_tasks(loop)
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


ARN = "arn:aws:{0}:us-east-1:123456789012:{1}"


def price(key: str) -> Decimal:
    item = load_prices().prices[key]
    return item.usd / item.per_units


def record(
    typ: str,
    name: str,
    inputs: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    custom: bool = True,
) -> Record:
    return Record(typ, name, f"{name}-id", dict(inputs), {**inputs, **(state or {})}, custom)


def fargate_service(
    name: str,
    *,
    count: int,
    cpu: int = 256,
    memory: int = 512,
    architecture: str = "ARM64",
    command: tuple[str, ...] = ("serve", "orders", "api"),
    role_arn: str | None = None,
    **service: Any,
) -> list[Record]:
    """A task definition and the ECS service that runs `count` of its tasks."""
    arn = ARN.format("ecs", f"task-definition/{name}:1")
    definition = record(
        cost.TASK_DEFINITION,
        f"{name}-task",
        {
            "family": name,
            "cpu": str(cpu),
            "memory": str(memory),
            "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": architecture},
            "containerDefinitions": json.dumps([{"name": name, "command": list(command)}]),
            **({} if role_arn is None else {"taskRoleArn": role_arn}),
        },
        {"arn": arn},
    )
    ecs = record(
        cost.ECS_SERVICE,
        f"{name}-service",
        {"launchType": "FARGATE", "desiredCount": count, "taskDefinition": arn, **service},
    )
    return [definition, ecs]


def line(result: Estimate, prefix: str) -> Decimal:
    [item] = [i for i in result.items if i.component.startswith(prefix)]
    return item.monthly


def test_arm_tasks_are_priced_exactly_per_vcpu_and_gb_hour() -> None:
    result = estimate(fargate_service("orders-api", count=2, cpu=256, memory=512))
    vcpu, gb = Decimal("0.25"), Decimal("0.5")
    assert result.total == 2 * HOURS * (vcpu * Decimal("0.03238") + gb * Decimal("0.00356"))
    assert [i.component for i in result.items] == [
        "Fargate vCPU, ARM64 (2 tasks)",
        "Fargate memory, ARM64 (2 tasks)",
    ]


def test_x86_tasks_take_the_x86_rates() -> None:
    result = estimate(fargate_service("api", count=1, cpu=1024, memory=2048, architecture="X86_64"))
    assert result.total == HOURS * (Decimal("0.04048") + 2 * Decimal("0.004445"))


def test_a_task_with_a_public_ip_in_cloud_map_pays_for_its_address_and_its_registration() -> None:
    records = fargate_service(
        "api",
        count=3,
        networkConfiguration={"assignPublicIp": True, "subnets": ["a", "b"]},
        serviceRegistries={"registryArn": "arn:discovery"},
    )
    namespace = record(cost.NAMESPACE, "namespace", {"name": "eventforge-dev.internal"})
    result = estimate([*records, namespace])
    assert line(result, "Public IPv4, Fargate tasks (3)") == 3 * HOURS * Decimal("0.005")
    assert line(result, "Cloud Map registered instances") == 3 * Decimal("0.10")
    assert line(result, "Route 53 private hosted zones") == Decimal("0.50")


def test_a_worker_long_polls_each_queue_its_task_role_may_receive_from() -> None:
    queues = [
        record(cost.QUEUE, f"queue-{i}", {"name": f"q{i}"}, {"arn": ARN.format("sqs", f"q{i}")})
        for i in range(3)
    ]
    role = record(cost.ROLE, "worker-task", {"name": "worker"}, {"arn": "arn:role/worker"})
    policy = record(
        cost.ROLE_POLICY,
        "worker-task-policy",
        {
            "role": role.id,
            "policy": json.dumps(
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                            "Resource": [queues[0].state["arn"], queues[1].state["arn"]],
                        },
                        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"},
                    ]
                }
            ),
        },
    )
    worker = fargate_service(
        "orders-worker",
        count=2,
        command=("serve", "orders", "worker"),
        role_arn="arn:role/worker",
    )
    result = estimate([*queues, role, policy, *worker])
    requests = 2 * 2 * HOURS * 3600 / 20  # tasks, queues, one 20 s receive at a time
    assert requests == 525_600
    assert line(result, "SQS idle long polls") == requests * Decimal("0.40") / 1_000_000


def test_a_worker_with_no_queue_to_poll_is_refused() -> None:
    worker = fargate_service("w", count=1, command=("serve", "orders", "worker"))
    with pytest.raises(UnpricedResourceError, match="no queue"):
        estimate(worker)


def test_network_database_keys_secrets_and_alarms_are_priced_at_their_list_prices() -> None:
    records = [
        record(cost.NAT_GATEWAY, "nat", {"subnetId": "public-0"}),
        record(cost.EIP, "nat", {"domain": "vpc"}),
        record(
            cost.VPC_ENDPOINT,
            "sqs",
            {"vpcEndpointType": "Interface", "subnetIds": ["a", "b", "c"]},
        ),
        record(cost.VPC_ENDPOINT, "s3", {"vpcEndpointType": "Gateway"}),
        record(
            cost.LOAD_BALANCER,
            "ingress",
            {"loadBalancerType": "network", "internal": True, "subnets": ["a", "b"]},
        ),
        record(
            cost.DB_INSTANCE,
            "database",
            {
                "engine": "postgres",
                "instanceClass": "db.t4g.small",
                "allocatedStorage": 50,
                "storageType": "gp3",
                "multiAz": True,
                "manageMasterUserPassword": True,
            },
        ),
        record(cost.KMS_KEY, "topic-key", {"enableKeyRotation": True}),
        record(cost.SECRETS_MANAGER_ENTRY, "tls", {"name": "tls"}),
        *[record(cost.ALARM, f"alarm-{i}", {"period": 60}) for i in range(3)],
        record(cost.SCALING_POLICY, "cpu", {"policyType": "TargetTrackingScaling"}),
    ]
    result = estimate(records)
    expected = {
        "NAT gateways (1)": HOURS * Decimal("0.045"),
        "Public IPv4, Elastic IPs (1)": HOURS * Decimal("0.005"),
        "Interface VPC endpoints": 3 * HOURS * Decimal("0.01"),
        "Network Load Balancers (1)": HOURS * Decimal("0.0225"),
        "RDS PostgreSQL db.t4g.small, Multi-AZ": 2 * HOURS * Decimal("0.032"),
        "RDS gp3 storage (50 GB, Multi-AZ)": 2 * 50 * Decimal("0.115"),
        "KMS customer managed keys (1)": Decimal(1),
        "Secrets Manager secrets (2, 1 RDS-managed)": 2 * Decimal("0.40"),
        "CloudWatch alarms": (3 + 2) * Decimal("0.10"),
    }
    assert {prefix: line(result, prefix) for prefix in expected} == expected
    assert result.total == sum(expected.values())
    assert any("NAT gateways" in charge for charge in result.usage_not_included)
    assert any("rotation" in charge for charge in result.usage_not_included)


def _metric_filter(name: str, metric: str = "EmailsUnsettled", **transformation: Any) -> Record:
    return record(
        cost.LOG_METRIC_FILTER,
        name,
        {
            "logGroupName": f"/eventforge/{name}",
            "pattern": '{ $.email_outcome = "resent" }',
            "metricTransformation": {
                "name": metric,
                "namespace": "EventForge/eventforge-dev",
                "value": "1",
                **transformation,
            },
        },
    )


def test_a_log_metric_with_no_default_value_is_usage_and_one_metric_however_many_filters() -> None:
    result = estimate([_metric_filter("worker"), _metric_filter("consumer")])
    assert result.total == 0
    assert [c for c in result.usage_not_included if "log metric filters" in c] == [
        "the custom metrics of log metric filters that receive data only when a line matches "
        "(1: $0.30 a metric-month, metered only in the hours a log line matches)"
    ]


def test_a_log_metric_with_a_default_value_receives_data_all_month_and_is_priced() -> None:
    result = estimate(
        [
            _metric_filter("worker", defaultValue="0"),
            _metric_filter("consumer"),  # the same metric: billed once
            _metric_filter("api", metric="Other", defaultValue="0"),
        ]
    )
    assert line(result, "CloudWatch custom metrics (2,") == 2 * Decimal("0.30")
    assert result.total == 2 * price("cloudwatch.custom_metric")
    assert not [c for c in result.usage_not_included if "log metric filters" in c]


def test_a_log_metric_whose_alarm_breaches_on_missing_data_is_a_heartbeat_priced_all_month() -> (
    None
):
    # The relays' backlog line comes every minute: its alarm counts silence as a failure.
    heartbeat = _metric_filter("relay", metric="OrdersOutboxOldestAge")
    alarm = {"namespace": "EventForge/eventforge-dev", "period": 300}
    result = estimate(
        [
            heartbeat,
            record(
                cost.ALARM,
                "outbox-age",
                {**alarm, "metricName": "OrdersOutboxOldestAge", "treatMissingData": "breaching"},
            ),
            _metric_filter("worker"),  # EmailsUnsettled: its alarm is healthy without data
            record(
                cost.ALARM,
                "unsettled",
                {**alarm, "metricName": "EmailsUnsettled", "treatMissingData": "notBreaching"},
            ),
        ]
    )
    assert line(result, "CloudWatch custom metrics (1,") == Decimal("0.30")
    assert line(result, "CloudWatch alarms") == 2 * Decimal("0.10")
    assert [c for c in result.usage_not_included if "log metric filters" in c] == [
        "the custom metrics of log metric filters that receive data only when a line matches "
        "(1: $0.30 a metric-month, metered only in the hours a log line matches)"
    ]


def test_a_log_metric_with_dimensions_is_unpriced() -> None:
    with pytest.raises(UnpricedResourceError, match="dimensions"):
        estimate([_metric_filter("worker", dimensions={"Service": "$.service"})])


def test_ses_configuration_sets_and_their_event_destinations_are_free() -> None:
    records = [
        record("aws:sesv2/configurationSet:ConfigurationSet", "set", {}),
        record(
            "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination",
            "destination",
            {},
        ),
    ]
    assert estimate(records).total == 0


def schedule(name: str, expression: str, target: str = ARN.format("sqs", "jobs")) -> Record:
    return record(
        cost.SCHEDULE,
        name,
        {"name": name, "scheduleExpression": expression, "target": {"arn": target}},
    )


def test_a_schedule_every_minute_is_invoked_43800_times_a_month_and_sends_as_many_ticks() -> None:
    result = estimate(
        [schedule("every-minute", "rate(1 minute)"), schedule("hourly", "rate(1 hour)")]
    )
    runs = Decimal(43_800 + 730)
    assert line(result, "EventBridge Scheduler invocations (2 schedules)") == (
        runs * Decimal("1.00") / 1_000_000
    )
    assert line(result, "SQS sends of the schedules' ticks") == runs * Decimal("0.40") / 1_000_000


def test_container_insights_is_reported_enabled_but_not_priced() -> None:
    cluster = record(
        cost.CLUSTER,
        "cluster",
        {
            "name": "eventforge-prod",
            "settings": [{"name": "containerInsights", "value": "enabled"}],
        },
    )
    result = estimate([cluster])
    assert result.total == 0
    assert result.not_estimated == (
        "ECS Container Insights (enabled) on cluster eventforge-prod: "
        "by metrics, usage-based — not estimated",
    )


def test_a_resource_type_neither_priced_nor_known_free_fails_the_estimate() -> None:
    instance = record("aws:ec2/instance:Instance", "bastion", {"instanceType": "t4g.nano"})
    with pytest.raises(UnpricedResourceError, match=r"aws:ec2/instance:Instance"):
        estimate([instance, record(cost.QUEUE, "queue", {})])


@pytest.mark.parametrize(
    "unpriced",
    [
        record(cost.LOAD_BALANCER, "alb", {"loadBalancerType": "application"}),
        record(cost.VPC_ENDPOINT, "gwlb", {"vpcEndpointType": "GatewayLoadBalancer"}),
        record(
            cost.DB_INSTANCE,
            "db",
            {
                "engine": "postgres",
                "instanceClass": "db.r8g.48xlarge",
                "storageType": "gp3",
                "allocatedStorage": 20,
            },
        ),
        record(cost.ALARM, "fast", {"period": 10}),
        record(cost.SCALING_POLICY, "predictive", {"policyType": "PredictiveScaling"}),
        schedule("cron", "cron(0 * * * ? *)"),
        schedule("to-a-function", "rate(1 hour)", ARN.format("lambda", "function:f")),
    ],
    ids=lambda r: r.name,
)
def test_a_known_type_in_a_shape_with_no_price_fails_the_estimate(unpriced: Record) -> None:
    with pytest.raises(UnpricedResourceError):
        estimate([unpriced])


def test_component_resources_are_groupings_and_never_priced() -> None:
    component = record("eventforge:infra:Service", "orders", {}, custom=False)
    assert estimate([component]).total == 0


def test_the_price_table_is_dated_and_sourced() -> None:
    prices = load_prices()
    assert prices.region == "us-east-1"
    assert prices.date
    assert prices.hours_per_month == HOURS
    assert all(p.source for p in prices.prices.values())
    assert not prices.prices["rds.postgresql.db.m7g.large"].confirmed


@pytest.fixture(scope="module")
def stacks() -> dict[str, StackEstimate]:
    """Every stack built offline and priced, as `python -m infra.cost` does."""
    return {stack: estimate_stack(stack) for stack in STACKS}


def test_every_stack_is_priced_and_prod_costs_more_than_staging_more_than_dev(
    stacks: dict[str, StackEstimate],
) -> None:
    totals = {name: s.estimate.total for name, s in stacks.items()}
    assert all(total > 0 for total in totals.values()), totals
    assert totals["prod"] > totals["staging"] > totals["dev"], totals


def test_the_estimate_is_of_the_stacks_running_tasks(stacks: dict[str, StackEstimate]) -> None:
    for name, stack in stacks.items():
        components = [i.component for i in stack.estimate.items]
        assert any(c.startswith("Fargate vCPU") for c in components), name
        assert any(c.startswith("RDS PostgreSQL") for c in components), name


def test_the_workers_idle_polls_are_of_the_queues_the_topology_gives_them() -> None:
    records = build_offline("prod", cost.stack_overrides("prod"))
    expected = Decimal(0)
    definitions = {r.state["arn"]: r for r in records if r.type == cost.TASK_DEFINITION}
    for service in (r for r in records if r.type == cost.ECS_SERVICE):
        definition = definitions[service.inputs["taskDefinition"]]
        for container in json.loads(definition.inputs["containerDefinitions"]):
            command = container.get("command") or []
            if "worker" in command:
                queues = TOPOLOGY.queues_consumed_by(command[1])
                expected += int(service.inputs["desiredCount"]) * len(queues) * HOURS * 3600 / 20
    assert expected > 0
    [polls] = [i for i in estimate(records).items if i.component.startswith("SQS idle")]
    assert polls.quantity == expected


def test_building_offline_raises_what_the_program_raises() -> None:
    with pytest.raises(ConfigError, match="logRetentionDays"):
        build_offline("dev", {**cost.stack_overrides("dev"), "eventforge:logRetentionDays": 8})


def test_building_offline_without_ingest_secrets_fails_unless_the_estimate_stands_them_in() -> None:
    with pytest.raises(ConfigError, match="ingestSecrets is required"):
        build_offline("dev", {"eventforge:imageTag": "0.1.0"})
    assert cost.stack_overrides("dev")[cost.INGEST_SECRETS_KEY] == cost.ESTIMATE_INGEST_SECRETS


def test_building_offline_raises_when_a_registration_fails() -> None:
    class FailingCloud(MockCloud):
        def new_resource(
            self, args: pulumi.runtime.MockResourceArgs
        ) -> tuple[str | None, dict[str, Any]]:
            if args.typ == cost.DB_INSTANCE:
                raise RuntimeError("the database was refused")
            return super().new_resource(args)

    with pytest.raises(RuntimeError, match="the database was refused"):
        build_offline("dev", cost.stack_overrides("dev"), cloud=FailingCloud("us-east-1"))


def test_the_command_prints_the_report_of_the_stacks_it_is_given(
    stacks: dict[str, StackEstimate], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cost.main(["dev"]) == 0
    out, err = capsys.readouterr()
    assert out == render([stacks["dev"]])
    assert "| **total** |" in out
    assert "dev: building Pulumi.dev.yaml" in err


def test_readme_table_is_current_compares_the_block_between_the_markers() -> None:
    rendered = "| a | b |\n|---|---|\n"
    readme = f"# EventForge\n\n{readme_block(rendered)}\n\nMore.\n"
    assert readme_table_is_current(readme, rendered)
    assert not readme_table_is_current(readme, "| a | c |\n")
    assert not readme_table_is_current("# EventForge\n", rendered)
    assert not readme_table_is_current(f"{cost.README_END}\n{cost.README_BEGIN}\n", rendered)


def test_the_readme_holds_the_current_cost_report(stacks: dict[str, StackEstimate]) -> None:
    rendered = render([stacks[s] for s in STACKS])
    readme = (ROOT / "README.md").read_text()
    assert readme_table_is_current(readme, rendered), (
        "README.md's cost report is stale: paste the output of `python -m infra.cost` "
        f"between {cost.README_BEGIN} and {cost.README_END}"
    )
