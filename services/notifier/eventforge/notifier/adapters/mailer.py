"""Email through Amazon SES (`SendEmail` with a plain-text and an HTML part)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from eventforge.notifier.service_layer.ports import Mailer, MailError

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


class SesMailer(Mailer):
    def __init__(self, client: SESClient, sender: str) -> None:
        self.client = client
        self.sender = sender

    def send(self, *, recipient: str, subject: str, text: str, html: str) -> str:
        try:
            reply = self.client.send_email(
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
        except BotoCoreError as error:
            raise MailError(f"SES unreachable: {error}") from error
        return reply["MessageId"]
