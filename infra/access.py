"""Least privilege, in one place: what each process role of each service may do on AWS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from eventforge.runtime.settings import ServiceName
from eventforge.topology import UPLOADS_INCOMING_PREFIX, UPLOADS_QUARANTINE_PREFIX
from infra.config import Role
from infra.iam import EVERY_RESOURCE, Grant

SQS_CONSUMER_ACTIONS = (
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
)
"""What a consumer does with its own queues (batch calls authorize as their single action)."""

# Publishing into a KMS-encrypted topic: SNS uses the key on the publisher's behalf.
TOPIC_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")

EMAIL_SENDER: ServiceName = "notifier"
"""The one service that sends emails (SES), with its own identity and configuration set."""
SES_SEND_ACTIONS = ("ses:SendEmail", "ses:SendRawEmail")

LAMBDA_NETWORK_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


@dataclass(frozen=True)
class ServiceResources:
    """The ARNs one service's processes touch."""

    service: ServiceName
    topic_arn: pulumi.Input[str] | None
    """The topic the service publishes to (its relay's), if any."""
    topic_key_arn: pulumi.Input[str] | None
    queue_arns: Sequence[pulumi.Input[str]]
    bucket_arns: Mapping[str, pulumi.Input[str]]
    ses_identity_arn: pulumi.Input[str]
    database_user_arn: pulumi.Input[str]
    """The service's own database role as IAM names it (`…:dbuser:<DbiResourceId>/<role>`)."""
    ses_configuration_set_arn: pulumi.Input[str] | None = None
    """The configuration set the email sender names in each send (with mail events)."""


def task_grants(resources: ServiceResources, roles: Sequence[Role]) -> list[Grant]:
    """The task role's grants of a process running `roles`: each role's, and its database login."""
    grants = [database_grant(resources)]
    for role in roles:
        if role == "api":
            grants += _api(resources)
        elif role == "relay":
            grants += _relay(resources)
        else:
            grants += worker_grants(resources)
    return grants


def database_grant(resources: ServiceResources) -> Grant:
    """Log in to PostgreSQL as the service's own role, with an IAM authentication token."""
    return Grant("ConnectAsOwnDatabaseRole", ("rds-db:connect",), (resources.database_user_arn,))


def worker_grants(resources: ServiceResources) -> list[Grant]:
    """What consuming the service's queues needs, in an ECS worker or a Lambda function."""
    grants = [Grant("ConsumeOwnQueues", SQS_CONSUMER_ACTIONS, tuple(resources.queue_arns))]
    if resources.service == "files":
        uploads = resources.bucket_arns["uploads"]
        incoming = _objects(uploads, UPLOADS_INCOMING_PREFIX)
        quarantine = _objects(uploads, UPLOADS_QUARANTINE_PREFIX)
        grants += [
            Grant("ReadUploads", ("s3:GetObject",), (incoming, quarantine)),
            Grant("MoveRejectedUploads", ("s3:DeleteObject",), (incoming,)),
            Grant("QuarantineRejectedUploads", ("s3:PutObject",), (quarantine,)),
            # Without it S3 answers 403, not 404, for an upload already moved or never made.
            Grant("TellMissingUploads", ("s3:ListBucket",), (uploads,)),
            Grant(
                "WriteProcessedFilesAndReceipts",
                ("s3:GetObject", "s3:PutObject"),
                (
                    _objects(resources.bucket_arns["processed"]),
                    _objects(resources.bucket_arns["receipts"]),
                ),
            ),
        ]
    if resources.service == EMAIL_SENDER:
        grants.append(_send_email(resources))
    return grants


def execution_grants(
    repository_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
    database_secret_arn: pulumi.Input[str] | None,
    tls_secret_arn: pulumi.Input[str] | None = None,
) -> list[Grant]:
    """What ECS needs to start a task: pull its image, ship its logs, inject its secrets (the
    master password into the migration container only, the certificate into the service's)."""
    return [
        Grant("RegistryToken", ("ecr:GetAuthorizationToken",), (EVERY_RESOURCE,)),
        Grant(
            "PullOwnImage",
            ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"),
            (repository_arn,),
        ),
        log_grant(log_group_arn),
        *secret_grants(database_secret_arn, tls_secret_arn),
    ]


def lambda_grants(
    resources: ServiceResources,
    log_group_arn: pulumi.Input[str],
    tls_secret_arn: pulumi.Input[str] | None = None,
) -> list[Grant]:
    """A Lambda consumer's grants: the worker's, a function's own, its certificate.

    Lambda has no secret injection: the handler reads its certificate itself.
    """
    return [
        *worker_grants(resources),
        *function_grants(resources, log_group_arn),
        *secret_grants(None, tls_secret_arn),
    ]


def webhook_grants(
    resources: ServiceResources, log_group_arn: pulumi.Input[str], secrets_arn: pulumi.Input[str]
) -> list[Grant]:
    """The HTTP function's grants: a function's own, and reading its webhook secrets (at start).

    It records each verified webhook in its service's outbox: its relay publishes, so the
    function needs no topic.
    """
    return [
        *function_grants(resources, log_group_arn),
        Grant("ReadOwnWebhookSecrets", ("secretsmanager:GetSecretValue",), (secrets_arn,)),
    ]


def function_grants(resources: ServiceResources, log_group_arn: pulumi.Input[str]) -> list[Grant]:
    """What every function of a service needs: its database login, its logs, its VPC ENIs."""
    return [
        database_grant(resources),
        log_grant(log_group_arn),
        Grant("ManageVpcNetworkInterfaces", LAMBDA_NETWORK_ACTIONS, (EVERY_RESOURCE,)),
    ]


def schedule_grants(queue_arn: pulumi.Input[str], dlq_arn: pulumi.Input[str]) -> list[Grant]:
    """What EventBridge Scheduler needs to deliver a service's ticks: send to its jobs queue,
    and dead-letter what it could not send into that queue's DLQ (it sends as the same role)."""
    return [Grant("SendTicksToOwnJobsQueue", ("sqs:SendMessage",), (queue_arn, dlq_arn))]


def secret_grants(
    database_secret_arn: pulumi.Input[str] | None, tls_secret_arn: pulumi.Input[str] | None
) -> list[Grant]:
    """Read the master password (migrations) and, with mTLS on, the service's certificate."""
    grants = []
    if database_secret_arn is not None:
        grants.append(
            Grant("ReadDatabaseSecret", ("secretsmanager:GetSecretValue",), (database_secret_arn,))
        )
    if tls_secret_arn is not None:
        grants.append(
            Grant("ReadOwnTlsSecret", ("secretsmanager:GetSecretValue",), (tls_secret_arn,))
        )
    return grants


def log_grant(log_group_arn: pulumi.Input[str]) -> Grant:
    """Create streams in and write to one log group."""
    return Grant(
        "WriteOwnLogs",
        ("logs:CreateLogStream", "logs:PutLogEvents"),
        (pulumi.Output.concat(log_group_arn, ":*"),),
    )


def _api(resources: ServiceResources) -> list[Grant]:
    # Only files signs URLs; a presigned URL carries the signer's permissions, nothing more.
    if resources.service != "files":
        return []
    return [
        Grant(
            "PresignUploads",
            ("s3:PutObject",),
            (_objects(resources.bucket_arns["uploads"], UPLOADS_INCOMING_PREFIX),),
        ),
        Grant(
            "PresignDownloads",
            ("s3:GetObject",),
            (
                _objects(resources.bucket_arns["processed"]),
                _objects(resources.bucket_arns["receipts"]),
            ),
        ),
    ]


def _relay(resources: ServiceResources) -> list[Grant]:
    if resources.topic_arn is None:
        return []
    grants = [Grant("PublishToOwnTopic", ("sns:Publish",), (resources.topic_arn,))]
    if resources.topic_key_arn is not None:
        # A customer-managed key; SNS's AWS-managed key admits the account's publishers itself.
        grants.append(Grant("EncryptForOwnTopic", TOPIC_KEY_ACTIONS, (resources.topic_key_arn,)))
    return grants


def _send_email(resources: ServiceResources) -> Grant:
    """Send from the service's own identity, and with its configuration set: SES authorizes
    a send on the identity and on the configuration set the send names."""
    arns = [resources.ses_identity_arn]
    if resources.ses_configuration_set_arn is not None:
        arns.append(resources.ses_configuration_set_arn)
    return Grant("SendEmailFromOwnIdentity", SES_SEND_ACTIONS, tuple(arns))


def _objects(bucket_arn: pulumi.Input[str], prefix: str = "") -> pulumi.Output[str]:
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")
