"""The alarms the stacks raise from their logs (their OpenTelemetry metrics go to a collector):
the age of each publishing service's outbox, which its relays log every minute, and orders the
saga ended COMPENSATION_FAILED."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import pulumi
import pytest

from infra.config import ALL_SERVICES, ConfigError, load_settings
from tests.infra.conftest import STACKS, Deploy, configure_stack, stack_config
from tests.infra.graph import ALARM, LOG_GROUP, LOG_METRIC_FILTER, TOPIC
from tests.infra.log_metrics import count_alarm, count_transformation

OUTBOX_PATTERN = "{ $.outbox_oldest_age_seconds >= 0 }"
SAGA_PATTERN = '{ $.saga_outcome = "COMPENSATION_FAILED" }'
PUBLISHERS = ("orders", "files", "notifier", "ingest")
"""Every service publishes its events through an outbox (and runs a relay)."""


def _log_groups(stack: str, prefix: str, service: str, roles: tuple[str, ...]) -> set[str]:
    """Where the processes running any of `roles` of `service` log, in the stack's layout."""
    if stack == "dev":  # combinedRoles: one process per service
        return {f"/eventforge/{prefix}/{service}"}
    return {f"/eventforge/{prefix}/{service}-{role}" for role in roles}


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_each_relays_backlog_line_feeds_an_outbox_age_alarm_per_service(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    settings = deployment.settings
    prefix = settings.name_prefix

    def check() -> None:
        alerts = cloud.by_state(TOPIC, "name", f"{prefix}-alerts").state["arn"]
        filters = [
            f for f in cloud.of_type(LOG_METRIC_FILTER) if f.inputs["pattern"] == OUTBOX_PATTERN
        ]
        by_metric: dict[str, set[str]] = {}
        for metric_filter in filters:
            transformation = metric_filter.inputs["metricTransformation"]
            assert transformation == {
                "name": transformation["name"],
                "namespace": f"EventForge/{prefix}",
                "value": "$.outbox_oldest_age_seconds",
                "unit": "Seconds",
            }
            assert "defaultValue" not in transformation
            by_metric.setdefault(transformation["name"], set()).add(
                metric_filter.inputs["logGroupName"]
            )
        assert set(PUBLISHERS) == set(ALL_SERVICES)
        assert by_metric == {
            f"{service.capitalize()}OutboxOldestAge": _log_groups(
                stack, prefix, service, ("relay",)
            )
            for service in PUBLISHERS
        }
        for groups in by_metric.values():
            for group in groups:
                assert cloud.by_state(LOG_GROUP, "name", group)
        alarms = {
            a.inputs["metricName"]: a.inputs
            for a in cloud.of_type(ALARM)
            if a.inputs["metricName"].endswith("OutboxOldestAge")
        }
        assert set(alarms) == set(by_metric)
        for service in PUBLISHERS:
            alarm = alarms[f"{service.capitalize()}OutboxOldestAge"]
            assert alarm == {
                **alarm,
                "name": f"{prefix}-{service}-outbox-age",
                "namespace": f"EventForge/{prefix}",
                "statistic": "Maximum",
                "period": 300,
                "evaluationPeriods": 1,
                "threshold": settings.alarms.outbox_oldest_age_seconds,
                "comparisonOperator": "GreaterThanThreshold",
                # Relays log every minute: five silent minutes mean no relay publishes.
                "treatMissingData": "breaching",
                "alarmActions": [alerts],
                "okActions": [alerts],
            }
            assert "dimensions" not in alarm
            assert service in alarm["alarmDescription"]

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_a_compensation_failed_line_of_the_orders_api_or_worker_raises_one_alarm(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    prefix = deployment.settings.name_prefix

    def check() -> None:
        filters = [
            f for f in cloud.of_type(LOG_METRIC_FILTER) if f.inputs["pattern"] == SAGA_PATTERN
        ]
        # The worker runs the saga; the API compensates an order it cancels.
        assert {f.inputs["logGroupName"] for f in filters} == _log_groups(
            stack, prefix, "orders", ("api", "worker")
        )
        for metric_filter in filters:
            assert metric_filter.inputs["metricTransformation"] == count_transformation(
                prefix, "SagaCompensationFailed"
            )
        alerts = cloud.by_state(TOPIC, "name", f"{prefix}-alerts").state["arn"]
        [alarm] = [
            a for a in cloud.of_type(ALARM) if a.inputs["metricName"] == "SagaCompensationFailed"
        ]
        assert alarm.inputs == {
            **alarm.inputs,
            **count_alarm(prefix, f"{prefix}-orders-saga-compensation-failed", alerts),
        }

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_backbone_phase_has_no_log_to_raise_these_alarms_from(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack, {"eventforge:imageTag": None})
    cloud = deployment.cloud

    def check() -> None:
        patterns = {f.inputs["pattern"] for f in cloud.of_type(LOG_METRIC_FILTER)}
        assert not patterns & {OUTBOX_PATTERN, SAGA_PATTERN}
        names = {a.inputs["metricName"] for a in cloud.of_type(ALARM)}
        assert "SagaCompensationFailed" not in names
        assert not [n for n in names if n.endswith("OutboxOldestAge")]

    return deployment.settled(check)


def test_the_stacks_alarm_sooner_on_an_outbox_the_more_they_matter() -> None:
    thresholds = {
        stack: stack_config(stack)["eventforge:alarms"]["outboxOldestAgeSeconds"]
        for stack in STACKS
    }
    assert thresholds["prod"] < thresholds["staging"] < thresholds["dev"]


@pytest.mark.parametrize(
    ("alarms", "message"),
    [
        ({"dlqDepth": 0, "oldestMessageAgeSeconds": 900}, "missing.*outboxOldestAgeSeconds"),
        (
            {"dlqDepth": 0, "oldestMessageAgeSeconds": 900, "outboxOldestAgeSeconds": "soon"},
            "alarms.outboxOldestAgeSeconds must be an integer",
        ),
        (
            {"dlqDepth": 0, "oldestMessageAgeSeconds": 900, "outboxOldestAgeSeconds": 0},
            "alarms.outboxOldestAgeSeconds must be at least 1",
        ),
    ],
)
@pulumi.runtime.test
def test_a_bad_outbox_alarm_setting_is_refused(alarms: dict[str, object], message: str) -> None:
    configure_stack("dev", {"eventforge:alarms": alarms})
    with pytest.raises(ConfigError, match=message):
        load_settings()
