"""SES event publishing: the configuration set the notifier sends with, and its SNS destination."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.policies import mail_events_topic_policy
from eventforge.topology import MailEvents

SES_PUBLISHER = "ses.amazonaws.com"
"""The service principal that publishes a configuration set's events into its SNS topic."""
TLS_POLICY = "REQUIRE"
"""SES delivers an email only over TLS, never in plain text to a server that lacks it."""
SUPPRESSED_REASONS = ("BOUNCE", "COMPLAINT")
"""Addresses that bounced or complained are not sent to again (SES's suppression list)."""


def ses_event_types(event_types: Sequence[str]) -> list[str]:
    """SES v2's names of the declared event types: `send` → SEND, `deliveryDelay` →
    DELIVERY_DELAY (the topology uses the lower camel case of SES v1 and its events)."""
    return [re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).upper() for event_type in event_types]


@dataclass
class MailEventPublishingArgs:
    """The declared mail events, the configuration set's physical name and its topic."""

    spec: MailEvents
    configuration_set_name: str
    topic_arn: pulumi.Input[str]
    """The topic fed by the events, encrypted with a key whose policy admits SES."""
    account_id: pulumi.Input[str]


class MailEventPublishing(pulumi.ComponentResource):
    """A configuration set whose email events SES publishes into the topic, and only SES may.

    SES checks that it may publish when the event destination is written: the destination
    waits for the topic policy.
    """

    configuration_set_name: pulumi.Output[str]
    configuration_set_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: MailEventPublishingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:MailEventPublishing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        configuration_set = aws.sesv2.ConfigurationSet(
            f"{name}-configuration-set",
            configuration_set_name=args.configuration_set_name,
            sending_options=aws.sesv2.ConfigurationSetSendingOptionsArgs(sending_enabled=True),
            reputation_options=aws.sesv2.ConfigurationSetReputationOptionsArgs(
                reputation_metrics_enabled=True
            ),
            delivery_options=aws.sesv2.ConfigurationSetDeliveryOptionsArgs(tls_policy=TLS_POLICY),
            suppression_options=aws.sesv2.ConfigurationSetSuppressionOptionsArgs(
                suppressed_reasons=list(SUPPRESSED_REASONS)
            ),
            opts=child,
        )
        policy = aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=args.topic_arn,
            policy=pulumi.Output.all(args.topic_arn, configuration_set.arn, args.account_id).apply(
                lambda values: json.dumps(mail_events_topic_policy(values[0], values[1], values[2]))
            ),
            opts=child,
        )
        aws.sesv2.ConfigurationSetEventDestination(
            f"{name}-destination",
            configuration_set_name=configuration_set.configuration_set_name,
            event_destination_name=f"sns-{args.spec.topic}",
            event_destination=aws.sesv2.ConfigurationSetEventDestinationEventDestinationArgs(
                enabled=True,
                matching_event_types=ses_event_types(args.spec.event_types),
                sns_destination=aws.sesv2.ConfigurationSetEventDestinationEventDestinationSnsDestinationArgs(
                    topic_arn=args.topic_arn
                ),
            ),
            # SES verifies that it may publish into the topic when the destination is written.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.configuration_set_name = configuration_set.configuration_set_name
        self.configuration_set_arn = configuration_set.arn
        self.register_outputs(
            {
                "configuration_set_name": self.configuration_set_name,
                "configuration_set_arn": self.configuration_set_arn,
            }
        )
