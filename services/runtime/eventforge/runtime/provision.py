"""Create the declared topology on an AWS endpoint (the emulator, or a bare account), idempotently.

Every step converges: running it again changes nothing that already matches the declaration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from eventforge.policies import (
    bucket_notifications_topic_policy,
    mail_events_topic_policy,
    queue_policy,
)
from eventforge.runtime import aws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType, EventType
    from mypy_boto3_s3.type_defs import TopicConfigurationTypeDef
    from mypy_boto3_ses import SESClient
    from mypy_boto3_ses.literals import EventTypeType
    from mypy_boto3_ses.type_defs import EventDestinationOutputTypeDef, EventDestinationTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

    from eventforge.runtime.settings import Settings
    from eventforge.topology import Bucket, MailEvents, ResolvedQueue, ResolvedTopology, Topology

logger = logging.getLogger("eventforge.provision")


@dataclass(frozen=True)
class ProvisionedQueue:
    """Addresses of a provisioned queue, its DLQ and its subscription."""

    url: str
    arn: str
    dlq_url: str
    dlq_arn: str
    subscription_arn: str | None
    """None for a jobs queue: its schedules send to it, no topic does."""


@dataclass(frozen=True)
class ProvisionedTopology:
    """What `provision` created, keyed by logical name."""

    topic_arns: Mapping[str, str]
    queues: Mapping[str, ProvisionedQueue]
    buckets: Mapping[str, str]


def provision(settings: Settings, topology: Topology) -> ProvisionedTopology:
    """Create or update every topic, queue, subscription, bucket and mail event destination."""
    topology.validate()
    names = topology.resolve_for(settings)
    sns, sqs, s3 = aws.sns(settings), aws.sqs(settings), aws.s3(settings)
    topic_arns = {logical: _ensure_topic(sns, name) for logical, name in names.topics.items()}
    queues = {
        logical: _ensure_queue_pair(
            sqs,
            sns,
            resolved,
            None if resolved.spec.topic is None else topic_arns[resolved.spec.topic],
        )
        for logical, resolved in names.queues.items()
    }
    for bucket in topology.buckets:
        _ensure_bucket(s3, names.buckets[bucket.name], settings.aws_region)
    for topic in topology.topics:
        sources = [names.buckets[b.name] for b in topology.notifying_buckets(topic.name)]
        if sources:
            _allow_buckets_to_publish(sns, topic_arns[topic.name], sources)
    for bucket in topology.buckets:
        _ensure_notifications(s3, names, bucket, topic_arns)
    ses = aws.ses(settings)
    mail = topology.mail_events
    if mail is not None and names.configuration_set is not None:
        topic_arn = topic_arns[mail.topic]
        _allow_mail_events_to_publish(sns, topic_arn, names.configuration_set, settings.aws_region)
        _ensure_configuration_set(ses, names.configuration_set)
        _ensure_event_destination(ses, names.configuration_set, mail, topic_arn)
    _ensure_sender_identity(ses, settings.notifier_email_sender)
    return ProvisionedTopology(topic_arns=topic_arns, queues=queues, buckets=dict(names.buckets))


def _ensure_topic(sns: SNSClient, name: str) -> str:
    arn = sns.create_topic(Name=name)["TopicArn"]
    logger.info("topic %s ready", arn)
    return arn


def _ensure_queue_pair(
    sqs: SQSClient, sns: SNSClient, resolved: ResolvedQueue, topic_arn: str | None
) -> ProvisionedQueue:
    spec = resolved.spec
    dlq_url = _ensure_queue(
        sqs, resolved.dlq_name, {"MessageRetentionPeriod": str(spec.dlq_retention_seconds)}
    )
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # A queue's ARN differs from its DLQ's only in the name (same partition, region, account).
    arn = f"{dlq_arn.rsplit(':', 1)[0]}:{resolved.name}"
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receives}
    attributes: dict[QueueAttributeNameType, str] = {
        "VisibilityTimeout": str(spec.visibility_timeout_seconds),
        "MessageRetentionPeriod": str(spec.retention_seconds),
        "RedrivePolicy": json.dumps(redrive),
    }
    if topic_arn is not None:
        attributes["Policy"] = json.dumps(queue_policy(arn, topic_arn))
    url = _ensure_queue(sqs, resolved.name, attributes)
    subscription_arn = (
        None
        if topic_arn is None
        else _ensure_subscription(sns, topic_arn, arn, _subscription_attributes(resolved))
    )
    return ProvisionedQueue(
        url=url, arn=arn, dlq_url=dlq_url, dlq_arn=dlq_arn, subscription_arn=subscription_arn
    )


def _ensure_queue(
    sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]
) -> str:
    try:
        url = sqs.create_queue(QueueName=name, Attributes=dict(attributes))["QueueUrl"]
        logger.info("queue %s ready", name)
    except ClientError as error:
        if _code(error) not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=dict(attributes))
        logger.info("queue %s updated", name)
    return url


def _subscription_attributes(resolved: ResolvedQueue) -> dict[str, str]:
    policy = resolved.spec.filter_policy()
    attributes = {"RawMessageDelivery": "true"}
    if policy is not None:
        attributes["FilterPolicyScope"] = "MessageAttributes"
        attributes["FilterPolicy"] = json.dumps(policy)
    return attributes


def _ensure_subscription(
    sns: SNSClient, topic_arn: str, queue_arn: str, attributes: Mapping[str, str]
) -> str:
    existing = _find_subscription(sns, topic_arn, queue_arn)
    if existing is None:
        arn = sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=dict(attributes),
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        logger.info("subscription %s -> %s created", topic_arn, queue_arn)
        return arn
    current = sns.get_subscription_attributes(SubscriptionArn=existing)["Attributes"]
    changes = _subscription_changes(current, attributes)
    for name, value in changes.items():
        sns.set_subscription_attributes(
            SubscriptionArn=existing, AttributeName=name, AttributeValue=value
        )
    logger.info(
        "subscription %s -> %s %s", topic_arn, queue_arn, "updated" if changes else "unchanged"
    )
    return existing


def _find_subscription(sns: SNSClient, topic_arn: str, queue_arn: str) -> str | None:
    pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
    for page in pages:
        for subscription in page["Subscriptions"]:
            if subscription.get("Protocol") == "sqs" and subscription.get("Endpoint") == queue_arn:
                return subscription["SubscriptionArn"]
    return None


def _subscription_changes(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """Attribute writes that turn `current` into `wanted`, scope before policy."""
    changes = {name: value for name, value in wanted.items() if not _same(current.get(name), value)}
    if "FilterPolicy" not in wanted and json.loads(current.get("FilterPolicy") or "{}"):
        changes["FilterPolicy"] = "{}"  # the documented way to remove a filter policy
    return changes


def _same(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if wanted.startswith("{"):
        return bool(json.loads(current) == json.loads(wanted))
    return current.lower() == wanted.lower()


def _ensure_bucket(s3: S3Client, name: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={
                    "LocationConstraint": cast("BucketLocationConstraintType", region)
                },
            )
    except ClientError as error:
        if _code(error) == "BucketAlreadyExists":
            s3.head_bucket(Bucket=name)  # raises unless the existing bucket is ours
        elif _code(error) != "BucketAlreadyOwnedByYou":
            raise
    logger.info("bucket %s ready", name)


def _allow_buckets_to_publish(sns: SNSClient, topic_arn: str, bucket_names: list[str]) -> None:
    partition, account = topic_arn.split(":")[1], topic_arn.split(":")[4]
    bucket_arns = [f"arn:{partition}:s3:::{b}" for b in bucket_names]
    policy = bucket_notifications_topic_policy(topic_arn, bucket_arns, account)
    sns.set_topic_attributes(
        TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(policy)
    )
    logger.info("topic policy %s allows %s", topic_arn, ", ".join(bucket_names))


def _ensure_notifications(
    s3: S3Client, names: ResolvedTopology, bucket: Bucket, topic_arns: Mapping[str, str]
) -> None:
    name = names.buckets[bucket.name]
    wanted: list[TopicConfigurationTypeDef] = [
        {
            "Id": f"{n.topic}-{n.prefix.rstrip('/')}",
            "TopicArn": topic_arns[n.topic],
            "Events": [cast("EventType", event) for event in n.events],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": n.prefix}]}},
        }
        for n in bucket.notifications
    ]
    current = s3.get_bucket_notification_configuration(Bucket=name).get("TopicConfigurations", [])
    # S3 sends a test event on every write, so only write when something differs.
    if _notification_keys(current) == _notification_keys(wanted):
        logger.info("bucket notifications %s unchanged", name)
        return
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={"TopicConfigurations": wanted},
    )
    logger.info("bucket notifications %s -> %d topic(s)", name, len(wanted))


def _notification_keys(
    configurations: Iterable[Mapping[str, Any]],
) -> set[tuple[str, tuple[str, ...], str]]:
    keys = set()
    for configuration in configurations:
        rules = configuration.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        prefix = next((r["Value"] for r in rules if r["Name"].lower() == "prefix"), "")
        keys.add((configuration["TopicArn"], tuple(sorted(configuration["Events"])), prefix))
    return keys


def _allow_mail_events_to_publish(
    sns: SNSClient, topic_arn: str, configuration_set: str, region: str
) -> None:
    partition, account = topic_arn.split(":")[1], topic_arn.split(":")[4]
    configuration_set_arn = (
        f"arn:{partition}:ses:{region}:{account}:configuration-set/{configuration_set}"
    )
    policy = mail_events_topic_policy(topic_arn, configuration_set_arn, account)
    sns.set_topic_attributes(
        TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(policy)
    )
    logger.info("topic policy %s allows configuration set %s", topic_arn, configuration_set)


def _ensure_configuration_set(ses: SESClient, name: str) -> None:
    try:
        ses.create_configuration_set(ConfigurationSet={"Name": name})
        logger.info("configuration set %s created", name)
    except ClientError as error:
        if _code(error) != "ConfigurationSetAlreadyExists":
            raise
        logger.info("configuration set %s ready", name)


def _ensure_event_destination(
    ses: SESClient, configuration_set: str, mail: MailEvents, topic_arn: str
) -> None:
    """Publish the mail events to the topic: create the SNS event destination, or repair it."""
    wanted: EventDestinationTypeDef = {
        "Name": f"{configuration_set}-sns",
        "Enabled": True,
        "MatchingEventTypes": [cast("EventTypeType", t) for t in mail.event_types],
        "SNSDestination": {"TopicARN": topic_arn},
    }
    described = ses.describe_configuration_set(
        ConfigurationSetName=configuration_set, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    current = next(
        (d for d in described.get("EventDestinations", []) if d.get("Name") == wanted["Name"]),
        None,
    )
    if current is None:
        ses.create_configuration_set_event_destination(
            ConfigurationSetName=configuration_set, EventDestination=wanted
        )
        logger.info("event destination %s -> %s created", wanted["Name"], topic_arn)
    elif _same_destination(current, wanted):
        logger.info("event destination %s -> %s unchanged", wanted["Name"], topic_arn)
    else:
        ses.update_configuration_set_event_destination(
            ConfigurationSetName=configuration_set, EventDestination=wanted
        )
        logger.info("event destination %s -> %s updated", wanted["Name"], topic_arn)


def _same_destination(
    current: EventDestinationOutputTypeDef, wanted: EventDestinationTypeDef
) -> bool:
    other_targets = ("CloudWatchDestination", "KinesisFirehoseDestination")
    return (
        current.get("Enabled", False) == wanted.get("Enabled", False)
        and set(current["MatchingEventTypes"]) == set(wanted["MatchingEventTypes"])
        and current.get("SNSDestination") == wanted.get("SNSDestination")
        and not any(current.get(target) for target in other_targets)
    )


def _ensure_sender_identity(ses: SESClient, address: str) -> None:
    """Ask SES to verify the notifier's sender address unless it is verified or pending.

    SES (and the emulator) refuse to send from an unverified identity; asking again for a verified
    one would mail the address another verification link, hence the check first.
    """
    found = ses.get_identity_verification_attributes(Identities=[address])["VerificationAttributes"]
    status = found[address]["VerificationStatus"] if address in found else None
    if status in ("Success", "Pending"):
        logger.info("email identity %s %s", address, status.lower())
        return
    ses.verify_email_identity(EmailAddress=address)
    logger.info("email identity %s verification requested", address)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
