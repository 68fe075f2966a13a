"""Resource policies of the event backbone, shared by the local provisioner and the Pulumi program.

Pure JSON builders (no AWS SDK, no Pulumi), so both provisioners grant exactly the same access.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

POLICY_VERSION = "2012-10-17"


def queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Only the subscribed topic may send to the queue."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AllowTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def bucket_notifications_topic_policy(
    topic_arn: str, bucket_arns: Sequence[str], account: str
) -> dict[str, Any]:
    """Only these buckets of this account may publish their object events to the topic."""
    return _service_publishes(
        "AllowBucketNotifications", "s3.amazonaws.com", topic_arn, list(bucket_arns), account
    )


def mail_events_topic_policy(
    topic_arn: str, configuration_set_arn: str, account: str
) -> dict[str, Any]:
    """Only SES, for this configuration set of this account, may publish its email events."""
    return _service_publishes(
        "AllowMailEvents", "ses.amazonaws.com", topic_arn, configuration_set_arn, account
    )


def _service_publishes(
    sid: str, principal: str, topic_arn: str, sources: str | list[str], account: str
) -> dict[str, Any]:
    """An AWS service may publish to the topic on behalf of these resources of this account."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": principal},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": sources},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }
