"""The encrypted topic every alarm notifies, with optional e-mail subscribers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.topic import EventTopic, EventTopicArgs


@dataclass
class AlertsTopicArgs:
    """The topic's physical name and who is e-mailed (each must confirm the subscription)."""

    name: pulumi.Input[str]
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    emails: Sequence[str] = field(default_factory=tuple)


class AlertsTopic(pulumi.ComponentResource):
    """An encrypted topic that CloudWatch alarms may publish into."""

    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: AlertsTopicArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:AlertsTopic", name, None, opts)
        topic = EventTopic(
            f"{name}-topic",
            EventTopicArgs(
                name=args.name,
                account_id=args.account_id,
                partition=args.partition,
                service_publishers=("cloudwatch.amazonaws.com",),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for index, email in enumerate(args.emails):
            aws.sns.TopicSubscription(
                f"{name}-email-{index}",
                topic=topic.arn,
                protocol="email",
                endpoint=email,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.arn = topic.arn
        self.register_outputs({"arn": self.arn})
