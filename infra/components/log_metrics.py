"""Counts of matching JSON log lines (CloudWatch Logs metric filters) and the alarms on them."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


def metric_namespace(name_prefix: str) -> str:
    """The CloudWatch namespace of a stack's own metrics, e.g. `EventForge/eventforge-prod`."""
    return f"EventForge/{name_prefix}"


@dataclass(frozen=True)
class LogMetric:
    """Log lines matching `pattern`, counted into one metric, and the alarm that watches it.

    Every log group the metric is counted in feeds the same metric (no dimensions): one
    metric and one alarm, however many processes log.
    """

    key: str
    """Names the filters and the alarm's resources, e.g. `emails-unsettled`."""
    pattern: str
    """A filter pattern of JSON log lines, e.g. `{ $.email_outcome = "resent" }`."""
    namespace: str
    metric_name: str
    alarm_name: str
    description: str
    alerts_topic_arn: pulumi.Input[str]
    threshold: int = 1
    """Matching lines in one period that raise the alarm."""
    period_seconds: int = 300


def count_in_log_group(
    resource_name: str,
    metric: LogMetric,
    log_group_name: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogMetricFilter:
    """Count the log group's matching lines into the metric.

    No default value: CloudWatch gets a data point only when a line matches, so the metric
    costs nothing in the hours it has none, and the alarm treats missing data as healthy.
    """
    return aws.cloudwatch.LogMetricFilter(
        resource_name,
        name=metric.key,
        log_group_name=log_group_name,
        pattern=metric.pattern,
        metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
            name=metric.metric_name, namespace=metric.namespace, value="1", unit="Count"
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def alarm_on(
    resource_name: str, metric: LogMetric, parent: pulumi.Resource
) -> aws.cloudwatch.MetricAlarm:
    """Notify the alerts topic when `threshold` lines match within one period."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=metric.alarm_name,
        alarm_description=metric.description,
        namespace=metric.namespace,
        metric_name=metric.metric_name,
        statistic="Sum",
        period=metric.period_seconds,
        evaluation_periods=1,
        threshold=metric.threshold,
        comparison_operator="GreaterThanOrEqualToThreshold",
        # No matching line, no data point: that is the healthy state.
        treat_missing_data="notBreaching",
        alarm_actions=[metric.alerts_topic_arn],
        ok_actions=[metric.alerts_topic_arn],
        opts=pulumi.ResourceOptions(parent=parent),
    )
