"""The emulator publishes SES `Send` events of emails sent with a configuration set (over HTTP)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from eventforge.runtime import aws
from eventforge.runtime.ses_events import SNS_SUBJECT
from eventforge.topology import TOPOLOGY
from tests.fixtures.emulator import ses_messages_to

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient
    from mypy_boto3_ses.literals import EventTypeType
    from mypy_boto3_sqs import SQSClient

    from eventforge.runtime.emulator import Emulator
    from eventforge.runtime.provision import ProvisionedTopology
    from eventforge.runtime.settings import Settings

pytestmark = pytest.mark.integration

TAG = "eventforge-notification-id"
RECIPIENT = "customer@example.com"


def _configuration_set(settings: Settings) -> str:
    name = TOPOLOGY.resolve(settings.name_prefix).configuration_set
    assert name is not None
    return name


def _mail_events_queue(provisioned: ProvisionedTopology) -> str:
    assert TOPOLOGY.mail_events is not None
    return provisioned.queues[f"notifier-{TOPOLOGY.mail_events.topic}"].url


def _drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """The bodies of every message on the queue, deleted, until a short long poll is empty."""
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", []):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def _send(ses: SESClient, sender: str, **extra: Any) -> str:
    return ses.send_email(
        Source=sender,
        Destination={"ToAddresses": [RECIPIENT]},
        Message={"Subject": {"Data": "Your receipt"}, "Body": {"Text": {"Data": "Thanks"}}},
        **extra,
    )["MessageId"]


def test_an_email_sent_with_the_configuration_set_publishes_one_send_event(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    ses, sqs = aws.ses(aws_settings), aws.sqs(aws_settings)
    configuration_set, notification_id = _configuration_set(aws_settings), str(uuid.uuid4())
    sender = aws_settings.notifier_email_sender
    message_id = _send(
        ses,
        sender,
        ConfigurationSetName=configuration_set,
        Tags=[{"Name": TAG, "Value": notification_id}],
    )
    [event] = _drain(sqs, _mail_events_queue(provisioned))  # raw delivery: the record itself
    assert event["eventType"] == "Send"
    assert event["send"] == {}
    mail = event["mail"]
    assert mail["messageId"] == message_id
    assert mail["source"] == sender
    assert mail["destination"] == [RECIPIENT]
    assert mail["sendingAccountId"] == "123456789012"
    assert mail["sourceArn"].startswith("arn:aws:ses:us-east-1:123456789012:identity/")
    assert mail["commonHeaders"]["subject"] == "Your receipt"
    assert mail["commonHeaders"]["to"] == [RECIPIENT]
    assert mail["tags"][TAG] == [notification_id]
    assert mail["tags"]["ses:configuration-set"] == [configuration_set]
    assert mail["tags"]["ses:operation"] == ["SendEmail"]
    assert mail["tags"]["ses:from-domain"] == [sender.rpartition("@")[2]]
    assert mail["timestamp"].endswith("Z")


def test_a_raw_email_sent_with_the_configuration_set_publishes_one_send_event(
    aws_settings: Settings, provisioned: ProvisionedTopology
) -> None:
    ses, sqs = aws.ses(aws_settings), aws.sqs(aws_settings)
    configuration_set, notification_id = _configuration_set(aws_settings), str(uuid.uuid4())
    sender = aws_settings.notifier_email_sender
    raw = f"From: {sender}\r\nTo: {RECIPIENT}\r\nSubject: Your receipt\r\n\r\nThanks\r\n"
    message_id = ses.send_raw_email(
        RawMessage={"Data": raw.encode()},
        ConfigurationSetName=configuration_set,
        Tags=[{"Name": TAG, "Value": notification_id}],
    )["MessageId"]
    [event] = _drain(sqs, _mail_events_queue(provisioned))
    assert event["eventType"] == "Send"
    assert event["mail"]["messageId"] == message_id
    assert event["mail"]["destination"] == [RECIPIENT]
    assert {"name": "Subject", "value": "Your receipt"} in event["mail"]["headers"]
    assert event["mail"]["tags"][TAG] == [notification_id]
    assert event["mail"]["tags"]["ses:operation"] == ["SendRawEmail"]


def test_an_email_sent_without_a_configuration_set_publishes_nothing(
    aws_settings: Settings, provisioned: ProvisionedTopology, emulator: Emulator
) -> None:
    message_id = _send(aws.ses(aws_settings), aws_settings.notifier_email_sender)
    assert [m.id for m in ses_messages_to(emulator, RECIPIENT)] == [message_id]
    assert _drain(aws.sqs(aws_settings), _mail_events_queue(provisioned)) == []


def test_an_unknown_configuration_set_is_refused_and_nothing_is_sent(
    aws_settings: Settings, provisioned: ProvisionedTopology, emulator: Emulator
) -> None:
    ses = aws.ses(aws_settings)
    with pytest.raises(ClientError) as refused:
        _send(ses, aws_settings.notifier_email_sender, ConfigurationSetName="no-such-set")
    assert refused.value.response["Error"]["Code"] == "ConfigurationSetDoesNotExist"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ses_messages_to(emulator, RECIPIENT) == []
    assert ses.get_send_quota()["SentLast24Hours"] == 0
    assert _drain(aws.sqs(aws_settings), _mail_events_queue(provisioned)) == []


def test_sesv2_sends_publish_send_events_too(
    aws_settings: Settings, provisioned: ProvisionedTopology, emulator: Emulator
) -> None:
    sesv2: Any = boto3.client(
        "sesv2", endpoint_url=aws_settings.aws_endpoint_url, region_name=aws_settings.aws_region
    )
    content = {"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}}}
    sent = {
        "FromEmailAddress": aws_settings.notifier_email_sender,
        "Destination": {"ToAddresses": [RECIPIENT]},
        "Content": content,
    }
    message_id = sesv2.send_email(
        **sent,
        ConfigurationSetName=_configuration_set(aws_settings),
        EmailTags=[{"Name": TAG, "Value": "v2"}],
    )["MessageId"]
    [event] = _drain(aws.sqs(aws_settings), _mail_events_queue(provisioned))
    assert event["mail"]["messageId"] == message_id
    assert event["mail"]["tags"][TAG] == ["v2"]
    with pytest.raises(ClientError) as refused:
        sesv2.send_email(**sent, ConfigurationSetName="no-such-set")
    assert refused.value.response["Error"]["Code"] == "NotFoundException"
    assert [m.id for m in ses_messages_to(emulator, RECIPIENT)] == [message_id]


def test_only_enabled_destinations_matching_send_publish_through_sns(
    aws_settings: Settings,
) -> None:
    """By hand: a disabled or non-`send` destination is silent; SNS wraps what is published."""
    ses, sns, sqs = aws.ses(aws_settings), aws.sns(aws_settings), aws.sqs(aws_settings)
    topic_arn = sns.create_topic(Name="mail-events")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="mail-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    # No raw delivery: the queue gets SNS's JSON envelope around the record.
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    sender = "sender@example.com"
    ses.verify_email_identity(EmailAddress=sender)
    destinations: list[tuple[str, bool, list[EventTypeType]]] = [
        ("sends", True, ["send", "delivery"]),
        ("disabled", False, ["send"]),
        ("bounces", True, ["bounce"]),
    ]
    for name, enabled, types in destinations:
        ses.create_configuration_set(ConfigurationSet={"Name": name})
        ses.create_configuration_set_event_destination(
            ConfigurationSetName=name,
            EventDestination={
                "Name": f"{name}-sns",
                "Enabled": enabled,
                "MatchingEventTypes": types,
                "SNSDestination": {"TopicARN": topic_arn},
            },
        )
    message_id = _send(ses, sender, ConfigurationSetName="sends")
    _send(ses, sender, ConfigurationSetName="disabled")
    _send(ses, sender, ConfigurationSetName="bounces")
    [envelope] = _drain(sqs, queue_url)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic_arn
    assert envelope["Subject"] == SNS_SUBJECT
    record = json.loads(envelope["Message"])
    assert record["eventType"] == "Send"
    assert record["mail"]["messageId"] == message_id
    assert record["mail"]["tags"]["ses:configuration-set"] == ["sends"]
    assert record["mail"]["sourceArn"] == f"arn:aws:ses:us-east-1:123456789012:identity/{sender}"
