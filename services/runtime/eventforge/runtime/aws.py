"""boto3 clients configured from the settings, the one place that knows endpoints and retries."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from eventforge.runtime.settings import Settings

CONNECT_TIMEOUT_SECONDS = 5.0
# Above SQS's longest long poll (20 s), so a receive is never cut short by the client.
READ_TIMEOUT_SECONDS = 30.0
MAX_ATTEMPTS = 3
EMULATOR_CREDENTIAL = "testing"


def _config(settings: Settings) -> Config:
    config = Config(
        region_name=settings.aws_region,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
    if settings.aws_endpoint_url:
        # The emulator is a bare host:port, where virtual-hosted bucket names cannot resolve.
        config = config.merge(Config(s3={"addressing_style": "path"}))
    return config


def _options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of `Session.client` shared by every service."""
    options: dict[str, Any] = {
        "endpoint_url": settings.aws_endpoint_url,
        "config": _config(settings),
    }
    has_own_credentials = "AWS_ACCESS_KEY_ID" in os.environ or "AWS_PROFILE" in os.environ
    if settings.aws_endpoint_url and not has_own_credentials:
        # The emulator accepts any credentials; a fresh machine has none to find.
        options["aws_access_key_id"] = EMULATOR_CREDENTIAL
        options["aws_secret_access_key"] = EMULATOR_CREDENTIAL
    return options


def _session(settings: Settings) -> boto3.session.Session:
    return boto3.session.Session(region_name=settings.aws_region)


def sqs(settings: Settings) -> SQSClient:
    """A new SQS client on the settings' endpoint and region."""
    return _session(settings).client("sqs", **_options(settings))


def sns(settings: Settings) -> SNSClient:
    """A new SNS client on the settings' endpoint and region."""
    return _session(settings).client("sns", **_options(settings))


def s3(settings: Settings) -> S3Client:
    """A new S3 client on the settings' endpoint and region; it presigns with SigV4."""
    options = _options(settings)
    # botocore presigns with SigV2 unless told otherwise, which buckets created since 2020
    # refuse; virtual-hosted addressing makes real AWS URLs regional (path style stays for the
    # emulator).
    presigning = Config(signature_version="s3v4")
    if not settings.aws_endpoint_url:
        presigning = presigning.merge(Config(s3={"addressing_style": "virtual"}))
    options["config"] = options["config"].merge(presigning)
    return _session(settings).client("s3", **options)


def ses(settings: Settings) -> SESClient:
    """A new SES client on the settings' endpoint and region."""
    return _session(settings).client("ses", **_options(settings))


def secretsmanager(settings: Settings) -> SecretsManagerClient:
    """A new Secrets Manager client on the settings' endpoint and region."""
    return _session(settings).client("secretsmanager", **_options(settings))


def topic_arn(settings: Settings, topic_name: str) -> str:
    """The ARN of a topic in this account and region (GetCallerIdentity needs no permission)."""
    sts = _session(settings).client("sts", **_options(settings))
    account = sts.get_caller_identity()["Account"]
    return f"arn:aws:sns:{settings.aws_region}:{account}:{topic_name}"
