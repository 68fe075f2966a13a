"""What a stack's count of JSON log lines and its alarm look like in the mocked graph: the
defaults of `infra.components.log_metrics.LogMetric`, as the tests expect them."""

from __future__ import annotations

from typing import Any


def count_transformation(name_prefix: str, metric_name: str) -> dict[str, str]:
    """A metric filter's transformation that counts each matching line once."""
    return {
        "name": metric_name,
        "namespace": f"EventForge/{name_prefix}",
        "value": "1",
        "unit": "Count",
    }


def count_alarm(name_prefix: str, alarm_name: str, alerts_arn: str) -> dict[str, Any]:
    """The inputs of the alarm on such a count: one line within five minutes raises it, a
    period without any is healthy, and the alerts topic hears of both."""
    return {
        "name": alarm_name,
        "namespace": f"EventForge/{name_prefix}",
        "statistic": "Sum",
        "period": 300,
        "evaluationPeriods": 1,
        "threshold": 1,
        "comparisonOperator": "GreaterThanOrEqualToThreshold",
        "treatMissingData": "notBreaching",
        "alarmActions": [alerts_arn],
        "okActions": [alerts_arn],
    }
