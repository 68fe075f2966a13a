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
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AllowBucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": list(bucket_arns)},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }
