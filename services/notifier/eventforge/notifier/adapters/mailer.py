"""Email through Amazon SES (`SendEmail` with a plain-text and an HTML part).

Each email is sent with the configuration set whose events (Send, Delivery, ...) SES publishes
to the notifier's `email` topic, and tagged with its notification id. The client must make one
attempt per call (`aws.ses(settings, single_attempt=True)`): a retry after a lost answer would
send the email again where only the Send event can tell whether the first one went out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from eventforge.notifier.service_layer.ports import (
    NOTIFICATION_TAG,
    Mailer,
    MailError,
    MailOutcomeUnknown,
)

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

# Answers that retrying the same email cannot change.
PERMANENT_ERRORS = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerified",
        "MailFromDomainNotVerifiedException",
        "InvalidParameterValue",
        "ConfigurationSetDoesNotExist",
    }
)


# Failures that prove the request never reached SES: sending again cannot duplicate.
NOT_SENT_ERRORS = (EndpointConnectionError, ConnectTimeoutError)


class SesMailer(Mailer):
    def __init__(self, client: SESClient, sender: str, configuration_set: str | None) -> None:
        self.client = client
        self.sender = sender
        self.configuration_set = configuration_set

    def send(
        self, *, notification_id: str, recipient: str, subject: str, text: str, html: str
    ) -> str:
        extra: dict[str, Any] = {}
        if self.configuration_set:
            extra["ConfigurationSetName"] = self.configuration_set
        try:
            reply = self.client.send_email(
                **extra,
                Tags=[{"Name": NOTIFICATION_TAG, "Value": notification_id}],
                Source=self.sender,
                Destination={"ToAddresses": [recipient]},
                Message={
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": text, "Charset": "UTF-8"},
                        "Html": {"Data": html, "Charset": "UTF-8"},
                    },
                },
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = str(error.response.get("Error", {}).get("Message", error))
            raise MailError(f"SES {code}: {message}", permanent=code in PERMANENT_ERRORS) from error
        except NOT_SENT_ERRORS as error:
            raise MailError(f"SES unreachable: {error}") from error
        except BotoCoreError as error:
            # A read timeout, a dropped connection: the request may have gone out.
            raise MailOutcomeUnknown(f"SES gave no answer: {error}") from error
        return reply["MessageId"]
