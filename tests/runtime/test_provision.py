"""Provisioning the topology on the emulator, and the routing it gives messages."""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import pytest

from eventforge.runtime import aws
from eventforge.runtime.provision import ProvisionedTopology, provision
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.fixtures.emulator import TEST_REGION

ACCOUNT = "123456789012"
"""The emulator's (moto's) default account."""

if TYPE_CHECKING:
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

pytestmark = pytest.mark.integration


def _receive(sqs: SQSClient, url: str, wait: int = 1) -> list[MessageTypeDef]:
    return sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    ).get("Messages", [])


def _drain(sqs: SQSClient, url: str) -> list[MessageTypeDef]:
    """Receive and delete until a short long poll comes back empty."""
    drained: list[MessageTypeDef] = []
    while batch := _receive(sqs, url):
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
        drained += batch
    return drained


def _drain_all(sqs: SQSClient, urls: dict[str, str]) -> dict[str, list[MessageTypeDef]]:
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        drained = pool.map(lambda url: _drain(sqs, url), urls.values())
        return dict(zip(urls, drained, strict=True))


def _without_s3_test_events(messages: Iterable[MessageTypeDef]) -> list[MessageTypeDef]:
    # S3 publishes one s3:TestEvent whenever a bucket's notifications are configured.
    return [m for m in messages if json.loads(m["Body"]).get("Event") != "s3:TestEvent"]


def test_every_resource_is_created(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    sqs, sns = aws.sqs(aws_settings), aws.sns(aws_settings)
    names = TOPOLOGY.resolve(aws_settings.name_prefix)
    queue_urls = sqs.list_queues(QueueNamePrefix=aws_settings.name_prefix)["QueueUrls"]
    assert {url.rsplit("/", 1)[1] for url in queue_urls} == {
        name for q in names.queues.values() for name in (q.name, q.dlq_name)
    }
    topic_arns = {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    assert topic_arns == set(provisioned.topic_arns.values())
    for logical, queue in provisioned.queues.items():
        spec = TOPOLOGY.queue(logical)
        attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])[
            "Attributes"
        ]
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": queue.dlq_arn,
            "maxReceiveCount": spec.max_receives,
        }
        assert attributes["VisibilityTimeout"] == str(spec.visibility_timeout_seconds)
        if spec.topic is None:
            # A jobs queue: no topic sends to it, and it subscribes to none.
            assert "Policy" not in attributes
            assert queue.subscription_arn is None
            continue
        assert queue.subscription_arn is not None
        statement = json.loads(attributes["Policy"])["Statement"][0]
        assert statement["Condition"] == {
            "ArnEquals": {"aws:SourceArn": provisioned.topic_arns[spec.topic]}
        }
        subscription = sns.get_subscription_attributes(SubscriptionArn=queue.subscription_arn)[
            "Attributes"
        ]
        assert subscription["Endpoint"] == queue.arn
        assert subscription["TopicArn"] == provisioned.topic_arns[spec.topic]
        assert subscription["RawMessageDelivery"] == "true"
        if spec.event_types is None:
            assert not subscription.get("FilterPolicy")
        else:
            assert json.loads(subscription["FilterPolicy"]) == spec.filter_policy()
            assert subscription["FilterPolicyScope"] == "MessageAttributes"
    # The notifier's sender is a verified SES identity (SES refuses to send from others).
    verified = aws.ses(aws_settings).get_identity_verification_attributes(
        Identities=[aws_settings.notifier_email_sender]
    )["VerificationAttributes"]
    assert verified[aws_settings.notifier_email_sender]["VerificationStatus"] == "Success"


def test_uploads_bucket_notifies_its_topic(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    s3, sns = aws.s3(aws_settings), aws.sns(aws_settings)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == set(provisioned.buckets.values())
    configuration = s3.get_bucket_notification_configuration(Bucket=provisioned.buckets["uploads"])
    [topic_configuration] = configuration["TopicConfigurations"]
    assert topic_configuration["TopicArn"] == provisioned.topic_arns["uploads"]
    assert topic_configuration["Events"] == ["s3:ObjectCreated:*"]
    rules = topic_configuration["Filter"]["Key"]["FilterRules"]
    assert [(r["Name"].lower(), r["Value"]) for r in rules] == [("prefix", "incoming/")]
    policy = sns.get_topic_attributes(TopicArn=provisioned.topic_arns["uploads"])["Attributes"]
    statement = json.loads(policy["Policy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnLike"] == {
        "aws:SourceArn": [f"arn:aws:s3:::{provisioned.buckets['uploads']}"]
    }


def test_mail_events_are_published_to_their_topic(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    ses, sns = aws.ses(aws_settings), aws.sns(aws_settings)
    assert TOPOLOGY.mail_events is not None
    name = TOPOLOGY.resolve(aws_settings.name_prefix).configuration_set
    assert name == f"{aws_settings.name_prefix}-email"
    topic_arn = provisioned.topic_arns[TOPOLOGY.mail_events.topic]
    assert _event_destinations(aws_settings) == [
        {
            "Name": f"{name}-sns",
            "Enabled": True,
            "MatchingEventTypes": list(TOPOLOGY.mail_events.event_types),
            "SNSDestination": {"TopicARN": topic_arn},
        }
    ]
    assert [s["Name"] for s in ses.list_configuration_sets()["ConfigurationSets"]] == [name]
    policy = sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]["Policy"]
    [statement] = json.loads(policy)["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"] == {
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:ses:{TEST_REGION}:{ACCOUNT}:configuration-set/{name}"
        },
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }


def _event_destinations(settings: Settings) -> list[dict[str, Any]]:
    name = TOPOLOGY.resolve(settings.name_prefix).configuration_set
    assert name is not None
    described = aws.ses(settings).describe_configuration_set(
        ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    return [dict(d) for d in described["EventDestinations"]]


def test_provisioning_twice_changes_nothing(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    sqs, sns, ses = aws.sqs(aws_settings), aws.sns(aws_settings), aws.ses(aws_settings)
    destinations = _event_destinations(aws_settings)
    assert provision(aws_settings, TOPOLOGY) == provisioned
    assert len(sqs.list_queues()["QueueUrls"]) == 2 * len(TOPOLOGY.queues)
    assert len(sns.list_topics()["Topics"]) == len(TOPOLOGY.topics)
    subscribed = [q for q in TOPOLOGY.queues if q.topic is not None]
    assert len(sns.list_subscriptions()["Subscriptions"]) == len(subscribed)
    assert len(ses.list_configuration_sets()["ConfigurationSets"]) == 1
    assert _event_destinations(aws_settings) == destinations
    # Only the first configuration of the bucket's notifications sent a test event.
    files_uploads = provisioned.queues["files-uploads"].url
    assert len(_drain(sqs, files_uploads)) == 1


def test_provisioning_repairs_drift(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    sns, sqs = aws.sns(aws_settings), aws.sqs(aws_settings)
    queue_url = provisioned.queues["files-orders"].url
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "5"})
    filtered = provisioned.queues["files-orders"].subscription_arn
    unfiltered = provisioned.queues["files-uploads"].subscription_arn
    assert filtered is not None
    assert unfiltered is not None
    sns.set_subscription_attributes(
        SubscriptionArn=filtered, AttributeName="RawMessageDelivery", AttributeValue="false"
    )
    for arn in (filtered, unfiltered):
        sns.set_subscription_attributes(
            SubscriptionArn=arn, AttributeName="FilterPolicy", AttributeValue='{"x": ["y"]}'
        )
    provision(aws_settings, TOPOLOGY)
    visibility = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
    assert visibility["Attributes"]["VisibilityTimeout"] == "30"
    repaired = sns.get_subscription_attributes(SubscriptionArn=filtered)["Attributes"]
    assert repaired["RawMessageDelivery"] == "true"
    assert json.loads(repaired["FilterPolicy"]) == {"event_type": ["order.confirmed"]}
    cleared = sns.get_subscription_attributes(SubscriptionArn=unfiltered)["Attributes"]
    assert json.loads(cleared.get("FilterPolicy") or "{}") == {}


def test_each_event_reaches_exactly_its_filtered_queues(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    sns, sqs = aws.sns(aws_settings), aws.sqs(aws_settings)
    expected: dict[str, set[str]] = {name: set() for name in provisioned.queues}
    for topic in TOPOLOGY.topics:
        for event_type in topic.event_types or (None,):
            tag = f"{topic.name}/{event_type}"
            attributes: dict[str, MessageAttributeValueTypeDef] = {}
            if event_type is not None:
                attributes = {"event_type": {"DataType": "String", "StringValue": event_type}}
            sns.publish(
                TopicArn=provisioned.topic_arns[topic.name],
                Message=json.dumps({"tag": tag}),
                MessageAttributes=attributes,
            )
            for queue in TOPOLOGY.queues_receiving(topic.name, event_type):
                expected[queue.name].add(tag)
    urls = {name: q.url for name, q in provisioned.queues.items()}
    urls |= {f"{name}-dlq": q.dlq_url for name, q in provisioned.queues.items()}
    received = _drain_all(sqs, urls)
    for name, messages in received.items():
        tags = {json.loads(m["Body"])["tag"] for m in _without_s3_test_events(messages)}
        assert tags == expected.get(name, set()), name
        for message in _without_s3_test_events(messages):
            event_type = json.loads(message["Body"])["tag"].split("/")[1]
            if event_type != "None":
                assert message["MessageAttributes"]["event_type"]["StringValue"] == event_type


def test_only_uploads_under_incoming_notify_the_files_service(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    s3, sqs = aws.s3(aws_settings), aws.sqs(aws_settings)
    bucket = provisioned.buckets["uploads"]
    s3.put_object(Bucket=bucket, Key="quarantine/rejected.pdf", Body=b"%PDF-")
    s3.put_object(Bucket=bucket, Key="incoming/receipt 1.pdf", Body=b"%PDF-")
    messages = _without_s3_test_events(_drain(sqs, provisioned.queues["files-uploads"].url))
    records = [record for m in messages for record in json.loads(m["Body"])["Records"]]
    assert [(r["eventName"], r["s3"]["bucket"]["name"]) for r in records] == [
        ("ObjectCreated:Put", bucket)
    ]
    # Keys arrive URL-encoded (how exactly differs between S3 and the emulator): always unquote.
    assert unquote_plus(records[0]["s3"]["object"]["key"]) == "incoming/receipt 1.pdf"


def test_a_message_received_max_receives_times_moves_to_the_dlq(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    sns, sqs = aws.sns(aws_settings), aws.sqs(aws_settings)
    queue = provisioned.queues["orders-orders"]
    sns.publish(
        TopicArn=provisioned.topic_arns["orders"],
        Message='{"poison": true}',
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": "order.placed"}},
    )
    for _ in range(TOPOLOGY.queue("orders-orders").max_receives):
        [message] = _receive(sqs, queue.url)
        # Fail fast instead of waiting out the visibility timeout.
        sqs.change_message_visibility(
            QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert _receive(sqs, queue.url) == []
    [dead] = _drain(sqs, queue.dlq_url)
    assert json.loads(dead["Body"]) == {"poison": True}
    assert dead["MessageAttributes"]["event_type"]["StringValue"] == "order.placed"
