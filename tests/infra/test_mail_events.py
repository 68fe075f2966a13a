"""SES event publishing: the configuration set, its SNS destination into the encrypted `email`
topic that only SES may publish into, the notifier's grant on it, and the alarm on emails the
notifier had to send again."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
import pytest

from eventforge.policies import mail_events_topic_policy
from eventforge.topology import TOPOLOGY, BucketNotification
from infra.components.mail_events import ses_event_types
from infra.program import _service_publishers
from tests.infra.cloud import ACCOUNT
from tests.infra.conftest import STACKS, Deploy, Deployment
from tests.infra.graph import (
    ALARM,
    CONFIGURATION_SET,
    EVENT_DESTINATION,
    KEY,
    LOG_GROUP,
    LOG_METRIC_FILTER,
    ROLE_POLICY,
    TOPIC,
    TOPIC_POLICY,
    statements,
)
from tests.infra.log_metrics import count_alarm, count_transformation

MAIL = TOPOLOGY.mail_events
assert MAIL is not None, "the topology declares mail events"
UNSETTLED_PATTERN = (
    '{ ($.email_outcome = "resent") || ($.email_outcome = "duplicate") '
    '|| ($.email_outcome = "abandoned") }'
)


@dataclass
class Constructed:
    """The resources constructed from now on, and the `depends_on` of each, by logical name.

    The mocks are not told a registration's dependencies: a stack transformation sees the
    options each resource was constructed with.
    """

    resources: dict[str, pulumi.Resource] = field(default_factory=dict)
    depends_on: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pulumi.runtime.register_stack_transformation(self._record)

    def _record(self, args: pulumi.ResourceTransformationArgs) -> None:
        self.resources[args.name] = args.resource
        depends_on = args.opts.depends_on if args.opts is not None else None
        if depends_on is None:
            self.depends_on[args.name] = []
        elif isinstance(depends_on, Sequence):
            self.depends_on[args.name] = list(depends_on)
        else:
            self.depends_on[args.name] = [depends_on]


def _email_topic_arn(deployment: Deployment) -> str:
    assert MAIL is not None
    topic = deployment.cloud.by_state(TOPIC, "name", deployment.names.topics[MAIL.topic])
    return str(topic.state["arn"])


def _configuration_set_arn(deployment: Deployment) -> str:
    [configuration_set] = deployment.cloud.of_type(CONFIGURATION_SET)
    return str(configuration_set.state["arn"])


@pulumi.runtime.test
def test_ses_event_types_are_the_upper_snake_case_names_of_the_declared_ones() -> None:
    assert ses_event_types(("send", "reject", "bounce", "complaint", "delivery")) == [
        "SEND",
        "REJECT",
        "BOUNCE",
        "COMPLAINT",
        "DELIVERY",
    ]
    assert ses_event_types(("renderingFailure", "deliveryDelay")) == [
        "RENDERING_FAILURE",
        "DELIVERY_DELAY",
    ]


@pulumi.runtime.test
def test_a_topic_fed_by_both_buckets_and_mail_events_is_refused() -> None:
    assert MAIL is not None
    uploads = TOPOLOGY.bucket("uploads")
    notified = replace(uploads, notifications=(BucketNotification(MAIL.topic, prefix="x/"),))
    topology = replace(
        TOPOLOGY, buckets=tuple(notified if b is uploads else b for b in TOPOLOGY.buckets)
    )
    assert topology.notifying_buckets(MAIL.topic)
    with pytest.raises(ValueError, match="fed by both buckets and mail events"):
        _service_publishers(topology, MAIL.topic)
    assert _service_publishers(TOPOLOGY, MAIL.topic) == ("ses.amazonaws.com",)
    assert _service_publishers(TOPOLOGY, "uploads") == ("s3.amazonaws.com",)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_configuration_set_has_the_resolved_name_and_sends_safely(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud

    def check() -> None:
        [configuration_set] = cloud.of_type(CONFIGURATION_SET)
        prefix = deployment.settings.name_prefix
        assert deployment.names.configuration_set == f"{prefix}-email"
        inputs = configuration_set.inputs
        assert inputs["configurationSetName"] == deployment.names.configuration_set
        assert inputs["sendingOptions"] == {"sendingEnabled": True}
        assert inputs["reputationOptions"] == {"reputationMetricsEnabled": True}
        assert inputs["deliveryOptions"] == {"tlsPolicy": "REQUIRE"}
        assert inputs["suppressionOptions"] == {"suppressedReasons": ["BOUNCE", "COMPLAINT"]}

    return deployment.settled(check)


@pulumi.runtime.test
def test_the_event_destination_publishes_the_declared_events_to_the_email_topic_after_its_policy(
    deploy: Deploy,
) -> pulumi.Output[None]:
    assert MAIL is not None
    constructed = Constructed()
    deployment = deploy("prod")
    cloud = deployment.cloud

    def check() -> None:
        [destination] = cloud.of_type(EVENT_DESTINATION)
        assert destination.inputs["configurationSetName"] == deployment.names.configuration_set
        assert destination.inputs["eventDestination"] == {
            "enabled": True,
            "matchingEventTypes": ["SEND", "REJECT", "BOUNCE", "COMPLAINT", "DELIVERY"],
            "snsDestination": {"topicArn": _email_topic_arn(deployment)},
        }
        assert destination.inputs["eventDestination"]["matchingEventTypes"] == [
            e.upper() for e in MAIL.event_types
        ]
        [policy] = [
            p
            for p in cloud.of_type(TOPIC_POLICY)
            if p.inputs["arn"] == _email_topic_arn(deployment)
        ]
        assert constructed.depends_on[destination.name] == [constructed.resources[policy.name]]

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_only_ses_for_the_configuration_set_of_this_account_may_publish_to_the_email_topic(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud

    def check() -> None:
        topic_arn = _email_topic_arn(deployment)
        [policy] = [p for p in cloud.of_type(TOPIC_POLICY) if p.inputs["arn"] == topic_arn]
        document = policy.json("policy")
        assert document == mail_events_topic_policy(
            topic_arn, _configuration_set_arn(deployment), ACCOUNT
        )
        [statement] = document["Statement"]
        assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
        assert statement["Action"] == "sns:Publish"
        assert statement["Condition"] == {
            "ArnLike": {
                "aws:SourceArn": (
                    f"arn:aws:ses:{deployment.settings.region}:{ACCOUNT}:configuration-set/"
                    f"{deployment.names.configuration_set}"
                )
            },
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
        }

    return deployment.settled(check)


@pulumi.runtime.test
def test_the_email_topic_is_encrypted_with_a_key_that_ses_may_use(
    deploy: Deploy,
) -> pulumi.Output[None]:
    deployment = deploy("staging")
    cloud = deployment.cloud

    def check() -> None:
        topic = cloud.by_state(TOPIC, "arn", _email_topic_arn(deployment))
        key = cloud.by_state(KEY, "arn", topic.inputs["kmsMasterKeyId"])
        assert key.inputs["enableKeyRotation"] is True
        services = [
            s for s in key.json("policy")["Statement"] if "Service" in (s.get("Principal") or {})
        ]
        assert services == [
            {
                "Sid": "ServicePublishes0",
                "Effect": "Allow",
                "Principal": {"Service": "ses.amazonaws.com"},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
            }
        ]

    return deployment.settled(check)


@pytest.mark.parametrize(
    ("stack", "sender"),
    [
        ("dev", "notifier-all-task"),  # every role in one task
        ("staging", "notifier-consumer-role"),  # the worker is a Lambda function
        ("prod", "notifier-worker-task"),
    ],
)
@pulumi.runtime.test
def test_only_the_notifier_may_send_email_and_with_its_identity_and_configuration_set(
    deploy: Deploy, stack: str, sender: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud

    def check() -> None:
        [identity] = cloud.of_type("aws:sesv2/emailIdentity:EmailIdentity")
        wanted = {identity.state["arn"], _configuration_set_arn(deployment)}
        ses = [s for s in statements(cloud) if any(a.startswith("ses:") for a in s.actions)]
        assert {s.owner.name for s in ses} == {f"{sender}-policy"}
        for statement in ses:
            assert statement.owner.type == ROLE_POLICY
            assert set(statement.actions) == {"ses:SendEmail", "ses:SendRawEmail"}
            assert set(statement.resources) == wanted

    return deployment.settled(check)


@pytest.mark.parametrize(
    ("stack", "log_group"),
    [
        ("dev", "/eventforge/eventforge-dev/notifier"),
        ("staging", "/aws/lambda/eventforge-staging-notifier-consumer"),
        ("prod", "/eventforge/eventforge-prod/notifier-worker"),
    ],
)
@pulumi.runtime.test
def test_emails_sent_again_are_counted_in_the_senders_logs_and_raise_an_alarm(
    deploy: Deploy, stack: str, log_group: str
) -> pulumi.Output[None]:
    deployment = deploy(stack)
    cloud = deployment.cloud
    prefix = deployment.settings.name_prefix

    def check() -> None:
        assert cloud.by_state(LOG_GROUP, "name", log_group)
        [metric_filter] = [
            f for f in cloud.of_type(LOG_METRIC_FILTER) if f.inputs["pattern"] == UNSETTLED_PATTERN
        ]
        assert metric_filter.inputs["logGroupName"] == log_group
        assert metric_filter.inputs["pattern"] == UNSETTLED_PATTERN
        # No default value: a data point only when an email is resent.
        assert metric_filter.inputs["metricTransformation"] == count_transformation(
            prefix, "EmailsUnsettled"
        )
        alerts = cloud.by_state(TOPIC, "name", f"{prefix}-alerts").state["arn"]
        [alarm] = [a for a in cloud.of_type(ALARM) if a.inputs["metricName"] == "EmailsUnsettled"]
        assert alarm.inputs == {
            **alarm.inputs,
            **count_alarm(prefix, f"{prefix}-notifier-emails-unsettled", alerts),
        }
        assert "dimensions" not in alarm.inputs

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_backbone_phase_publishes_mail_events_but_has_no_log_to_count_in(
    deploy: Deploy, stack: str
) -> pulumi.Output[None]:
    deployment = deploy(stack, {"eventforge:imageTag": None})
    cloud = deployment.cloud

    def check() -> None:
        assert len(cloud.of_type(CONFIGURATION_SET)) == 1
        assert len(cloud.of_type(EVENT_DESTINATION)) == 1
        assert not cloud.of_type(LOG_METRIC_FILTER)
        assert all(a.inputs["namespace"] == "AWS/SQS" for a in cloud.of_type(ALARM))

    return deployment.settled(check)


@pytest.mark.parametrize("stack", STACKS)
@pulumi.runtime.test
def test_the_stack_exports_its_configuration_set(deploy: Deploy, stack: str) -> pulumi.Output[None]:
    deployment = deploy(stack)
    outputs = pulumi.Output.from_input(dict(deployment.outputs.values))

    def check(values: dict[str, Any]) -> None:
        assert values["sesConfigurationSet"] == deployment.names.configuration_set

    settled = deployment.settled(lambda: None)
    return pulumi.Output.all(settled, outputs).apply(lambda both: check(both[1]))
