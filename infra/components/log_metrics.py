"""Metrics from JSON log lines (CloudWatch Logs metric filters) and the alarms on them.

The stacks export their OpenTelemetry metrics to an OTLP collector, not to CloudWatch: what an
alarm must watch is also logged, as a JSON line with a field, and a metric filter turns the
matching lines into a CloudWatch metric (a count, or a field's value).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


def metric_namespace(name_prefix: str) -> str:
    """The CloudWatch namespace of a stack's own metrics, e.g. `EventForge/eventforge-prod`."""
    return f"EventForge/{name_prefix}"


@dataclass(frozen=True)
class LogMetric:
    """Log lines matching `pattern`, turned into one metric, and the alarm that watches it.

    Every log group the metric is counted in feeds the same metric (no dimensions): one
    metric and one alarm, however many processes log. By default each matching line counts 1
    and the alarm sums them; `value` takes a number from the line instead (`$.field`).
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
    """Matching lines in one period that raise the alarm (or the value's, by `statistic`)."""
    period_seconds: int = 300
    value: str = "1"
    """What a matching line adds: 1 (a count), or a JSON field of the line, `$.name`."""
    unit: str = "Count"
    statistic: str = "Sum"
    comparison: str = "GreaterThanOrEqualToThreshold"
    missing_data: str = "notBreaching"
    """How the alarm treats a period without a matching line: `notBreaching` for a count (no
    line is healthy); `breaching` for a value that is logged all the time (its silence means
    the process that logs it is gone or stuck)."""


def count_in_log_group(
    resource_name: str,
    metric: LogMetric,
    log_group_name: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogMetricFilter:
    """Count the log group's matching lines (or their `value`) into the metric.

    No default value: CloudWatch gets a data point only when a line matches, so the metric
    costs nothing in the hours it has none, and the alarm decides what no data means.
    """
    return aws.cloudwatch.LogMetricFilter(
        resource_name,
        name=metric.key,
        log_group_name=log_group_name,
        pattern=metric.pattern,
        metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
            name=metric.metric_name,
            namespace=metric.namespace,
            value=metric.value,
            unit=metric.unit,
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def alarm_on(
    resource_name: str, metric: LogMetric, parent: pulumi.Resource
) -> aws.cloudwatch.MetricAlarm:
    """Notify the alerts topic when the period's statistic passes `threshold` (by default:
    `threshold` lines matched within one period)."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=metric.alarm_name,
        alarm_description=metric.description,
        namespace=metric.namespace,
        metric_name=metric.metric_name,
        statistic=metric.statistic,
        period=metric.period_seconds,
        evaluation_periods=1,
        threshold=metric.threshold,
        comparison_operator=metric.comparison,
        treat_missing_data=metric.missing_data,
        alarm_actions=[metric.alerts_topic_arn],
        ok_actions=[metric.alerts_topic_arn],
        opts=pulumi.ResourceOptions(parent=parent),
    )
