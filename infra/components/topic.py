"""An SNS topic encrypted with its own customer-managed KMS key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from eventforge.policies import POLICY_VERSION
from infra.policy_exceptions import KEY_POLICY_ADMIN_ACTION

# What an AWS service needs on a topic's key to publish into the encrypted topic.
SERVICE_PUBLISHER_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


@dataclass
class EventTopicArgs:
    """The topic's physical name and the AWS services (not roles) that publish into it."""

    name: pulumi.Input[str]
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    service_publishers: Sequence[str] = field(default_factory=tuple)
    """Service principals such as `s3.amazonaws.com` (bucket notifications) or
    `cloudwatch.amazonaws.com` (alarm actions)."""


AWS_MANAGED_KEY = "alias/aws/sns"


class EventTopic(pulumi.ComponentResource):
    """An encrypted SNS topic: with SNS's AWS-managed key, or a key of its own where needed.

    The AWS-managed key (free) serves topics that only our relays publish into: its policy lets
    any principal of the account that may publish use it through SNS. Its policy cannot be
    changed, though, so S3 notifications and CloudWatch alarm actions could never publish into
    such a topic (they need kms:GenerateDataKey and kms:Decrypt on the key): a topic with
    `service_publishers` gets a customer-managed key ($1 a month) whose policy names exactly
    those services.
    """

    arn: pulumi.Output[str]
    topic_name: pulumi.Output[str]
    key_arn: pulumi.Output[str] | None
    """The customer-managed key, None with the AWS-managed one."""

    def __init__(
        self, name: str, args: EventTopicArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:EventTopic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if not args.service_publishers:
            topic = aws.sns.Topic(
                name, name=args.name, kms_master_key_id=AWS_MANAGED_KEY, opts=child
            )
            self._outputs(topic, None)
            return
        key = aws.kms.Key(
            f"{name}-key",
            description=pulumi.Output.concat("Encrypts SNS topic ", args.name),
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=_key_policy(args),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            name=pulumi.Output.concat("alias/", args.name),
            target_key_id=key.key_id,
            opts=child,
        )
        topic = aws.sns.Topic(name, name=args.name, kms_master_key_id=key.arn, opts=child)
        self._outputs(topic, key.arn)

    def _outputs(self, topic: aws.sns.Topic, key_arn: pulumi.Output[str] | None) -> None:
        self.arn = topic.arn
        self.topic_name = topic.name
        self.key_arn = key_arn
        self.register_outputs(
            {"arn": self.arn, "topic_name": self.topic_name, "key_arn": self.key_arn}
        )


def _key_policy(args: EventTopicArgs) -> pulumi.Output[str]:
    account_root = pulumi.Output.format("arn:{0}:iam::{1}:root", args.partition, args.account_id)
    statements: list[dict[str, object]] = [
        {
            "Sid": "AccountAdministersKey",
            "Effect": "Allow",
            "Principal": {"AWS": account_root},
            "Action": KEY_POLICY_ADMIN_ACTION,
            "Resource": "*",
        }
    ]
    statements += [
        {
            "Sid": f"ServicePublishes{index}",
            "Effect": "Allow",
            "Principal": {"Service": principal},
            "Action": list(SERVICE_PUBLISHER_KEY_ACTIONS),
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}},
        }
        for index, principal in enumerate(args.service_publishers)
    ]
    return pulumi.Output.json_dumps({"Version": POLICY_VERSION, "Statement": statements})
