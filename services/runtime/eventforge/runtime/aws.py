"""boto3 clients configured from the settings, the one place that knows endpoints and retries."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from eventforge.runtime.emulator import CREDENTIAL

BROKER_ERRORS = (BotoCoreError, ClientError)
"""What a call to the AWS APIs (or the emulator) raises when it fails: retry with backoff."""

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
        options["aws_access_key_id"] = CREDENTIAL
        options["aws_secret_access_key"] = CREDENTIAL
    return options


_sessions: dict[str, boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def _client(settings: Settings, service: str, options: dict[str, Any]) -> Any:
    """A new client from the process's session of the settings' region.

    One session per process: each session loads botocore's endpoint data and service models
    again (8 clients on their own sessions took 71 MB and 1 s of CPU; on one, 19 MB and 0.2 s).
    Sessions are not thread-safe, so clients are created under a lock; clients are.
    """
    with _sessions_lock:
        session = _sessions.get(settings.aws_region)
        if session is None:
            session = _sessions[settings.aws_region] = boto3.session.Session(
                region_name=settings.aws_region
            )
        return session.client(service, **options)  # type: ignore[call-overload]


def sqs(settings: Settings) -> SQSClient:
    """A new SQS client on the settings' endpoint and region."""
    client: SQSClient = _client(settings, "sqs", _options(settings))
    return client


def sns(settings: Settings) -> SNSClient:
    """A new SNS client on the settings' endpoint and region."""
    client: SNSClient = _client(settings, "sns", _options(settings))
    return client


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
    client: S3Client = _client(settings, "s3", options)
    return client


def ses(settings: Settings, *, single_attempt: bool = False) -> SESClient:
    """A new SES client on the settings' endpoint and region.

    `single_attempt` turns botocore's retries off: a send retried after a lost answer (a read
    timeout) can send the email twice, so the sender decides itself what to do then.
    """
    options = _options(settings)
    if single_attempt:
        options["config"] = options["config"].merge(
            Config(retries={"mode": "standard", "total_max_attempts": 1})
        )
    client: SESClient = _client(settings, "ses", options)
    return client


def secretsmanager(settings: Settings) -> SecretsManagerClient:
    """A new Secrets Manager client on the settings' endpoint and region."""
    client: SecretsManagerClient = _client(settings, "secretsmanager", _options(settings))
    return client


class RDSAuthTokens(Protocol):
    """The part of boto3's RDS client the database engines use (no stubs of RDS are installed)."""

    def generate_db_auth_token(
        self,
        DBHostname: str,  # noqa: N803 - boto3's names
        Port: int,  # noqa: N803
        DBUsername: str,  # noqa: N803
        Region: str | None = None,  # noqa: N803
    ) -> str:
        """A presigned IAM authentication token (15 minutes) for one database user."""
        ...


def rds(settings: Settings) -> RDSAuthTokens:
    """A new RDS client in the settings' region; it signs IAM database tokens locally."""
    client: RDSAuthTokens = _client(settings, "rds", _options(settings))
    return client


def cloudwatch(settings: Settings) -> Any:
    """A new CloudWatch client on the settings' endpoint and region."""
    return _client(settings, "cloudwatch", _options(settings))


def account_id(settings: Settings) -> str:
    """The account the settings' credentials act in (GetCallerIdentity needs no permission)."""
    sts = _client(settings, "sts", _options(settings))
    return str(sts.get_caller_identity()["Account"])


def topic_arn(settings: Settings, topic_name: str) -> str:
    """The ARN of a topic in this account and region."""
    return f"arn:aws:sns:{settings.aws_region}:{account_id(settings)}:{topic_name}"
