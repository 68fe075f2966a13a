"""The emulator's server process: moto's server, with SES event publishing installed first.

Run as `python -m eventforge.runtime.emulator_server -H HOST -p PORT` (moto.server's own command
line, unchanged); `eventforge.runtime.emulator.Emulator` launches it.

Why: the notifier learns from SES's `Send` event that SES accepted an email whose answer it never
recorded (SES event publishing: a configuration set with an SNS event destination, the email sent
with `ConfigurationSetName` and `Tags`). moto stores configuration sets and event destinations but
publishes nothing when an email is sent with one, and accepts any `ConfigurationSetName`, even one
that does not exist. `install_ses_event_publishing` wraps moto's request handlers of SES v1
`SendEmail` and `SendRawEmail` and SESv2 `SendEmail` so that a send naming a configuration set
behaves as on SES:

- if the set does not exist, the call fails as on SES (v1 `ConfigurationSetDoesNotExist`, HTTP
  400; SESv2 `NotFoundException`, HTTP 404) and nothing is sent;
- once moto accepted the email, one `Send` event record, in the documented format
  (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html), is
  published to the topic of the set's enabled SNS event destination matching `send`, through
  moto's SNS backend in this process: the topic's subscriptions (raw delivery, filter policies)
  deliver it like any other publish. `mail.messageId` is the MessageId the call returned and
  `mail.tags` the call's tags as `{name: [value]}` plus SES's own `ses:operation`,
  `ses:configuration-set`, `ses:from-domain` and `ses:source-ip` (not `ses:caller-identity`:
  the emulator accepts any credentials, so there is no IAM identity to name).

Emails sent without a configuration set publish nothing, as before.

Limits: only `Send` is published. The emulator has no recipients' mail servers, so no email is
ever delivered, bounced, complained about or opened: no `Delivery`, `Bounce`, `Complaint` (nor
`Reject`, which SES's virus scan causes). moto keeps a single event destination per
configuration set (the last one created). A raw message's `X-SES-CONFIGURATION-SET` and
`X-SES-MESSAGE-TAGS` headers are not read, and templated sends publish nothing.
"""

from __future__ import annotations

import email
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formataddr, getaddresses, parseaddr
from typing import Any

from moto import server
from moto.ses.exceptions import ConfigurationSetDoesNotExist, NotFoundException
from moto.ses.models import RawMessage, SESBackend, ses_backends
from moto.ses.responses import EmailResponse
from moto.sesv2.responses import SESV2Response
from moto.sns.exceptions import SNSNotFoundError
from moto.sns.models import sns_backends

logger = logging.getLogger("eventforge.emulator")

SNS_SUBJECT = "Amazon SES Email Event Notification"
"""The SNS subject of SES's event notifications: AWS's documentation shows only the record (the
SNS message), but the notifications SES publishes carry this subject in their envelope."""

_INSTALLED = "_eventforge_publishes_ses_events"


def main(argv: list[str] | None = None) -> None:
    """Install SES event publishing into moto, then run moto's server with its command line."""
    install_ses_event_publishing()
    server.main(argv)


@dataclass(frozen=True)
class _Send:
    """What a send request says about event publishing."""

    configuration_set: str | None
    tags: list[tuple[str, str]]


@dataclass(frozen=True)
class _Operation:
    """One of moto's SES send handlers and how to read its request and its answer."""

    handler_class: type[Any]
    handler: str
    name: str
    """The operation's name, as SES tags its events with it (`ses:operation`)."""
    read: Callable[[Any], _Send]
    message_id: Callable[[Any], str]
    missing_set: Callable[[str], Exception]


def _v1_send(response: Any) -> _Send:
    tags = response._get_param("Tags", [])
    return _Send(
        response._get_param("ConfigurationSetName"), [(t["Name"], t["Value"]) for t in tags]
    )


def _v2_send(response: Any) -> _Send:
    params = json.loads(response.body)
    tags = params.get("EmailTags", [])
    return _Send(params.get("ConfigurationSetName"), [(t["Name"], t["Value"]) for t in tags])


def _v1_missing_set(name: str) -> Exception:
    return ConfigurationSetDoesNotExist(f"Configuration set <{name}> does not exist.")


def _v2_missing_set(name: str) -> Exception:
    return NotFoundException(f"Configuration set <{name}> does not exist.")


_OPERATIONS = (
    _Operation(
        EmailResponse,
        "send_email",
        "SendEmail",
        _v1_send,
        lambda result: str(result.result["MessageId"]),
        _v1_missing_set,
    ),
    _Operation(
        EmailResponse,
        "send_raw_email",
        "SendRawEmail",
        _v1_send,
        lambda result: str(result.result["MessageId"]),
        _v1_missing_set,
    ),
    _Operation(
        SESV2Response,
        "send_email",
        "SendEmail",
        _v2_send,
        lambda result: str(json.loads(result)["MessageId"]),
        _v2_missing_set,
    ),
)


def install_ses_event_publishing() -> None:
    """Wrap moto's SES send handlers (in their classes, for every request); idempotent."""
    for operation in _OPERATIONS:
        handler = getattr(operation.handler_class, operation.handler)
        if not getattr(handler, _INSTALLED, False):
            setattr(operation.handler_class, operation.handler, _publishing(handler, operation))


def _publishing(handler: Callable[[Any], Any], operation: _Operation) -> Callable[[Any], Any]:
    @functools.wraps(handler)
    def send(response: Any) -> Any:
        request = operation.read(response)
        if request.configuration_set is None:
            return handler(response)
        backend: SESBackend = ses_backends[response.current_account][response.region]
        if request.configuration_set not in backend.config_sets:
            raise operation.missing_set(request.configuration_set)
        result = handler(response)  # raises, sending nothing, if moto refuses the email
        source_ip = getattr(response.normalized_request, "remote_addr", None)
        record = _send_event(
            backend,
            operation.message_id(result),
            request.configuration_set,
            tags=request.tags,
            operation=operation.name,
            source_ip=source_ip,
        )
        for topic_arn in _send_topics(backend, request.configuration_set):
            _publish(topic_arn, record)
        return result

    setattr(send, _INSTALLED, True)
    return send


def _send_topics(backend: SESBackend, configuration_set: str) -> list[str]:
    """The topics of the set's enabled SNS event destinations that match `send`."""
    stored = backend.config_set_event_destination.get(configuration_set)
    destinations = [] if stored is None else [stored]  # moto keeps one per set
    return [
        d["SNSDestination"]["TopicARN"]
        for d in destinations
        if "SNSDestination" in d
        and str(d.get("Enabled", False)).lower() == "true"  # SES's default is disabled
        and "send" in {t.lower() for t in d.get("MatchingEventTypes", [])}
    ]


def _publish(topic_arn: str, record: dict[str, Any]) -> None:
    region, account = topic_arn.split(":")[3:5]
    try:
        sns_backends[account][region].publish(
            json.dumps(record), arn=topic_arn, subject=SNS_SUBJECT
        )
    except SNSNotFoundError:
        # SES accepted the email all the same: only its event is lost.
        logger.warning("SES event destination topic %s does not exist: Send event lost", topic_arn)


def _send_event(
    backend: SESBackend,
    message_id: str,
    configuration_set: str,
    *,
    tags: list[tuple[str, str]],
    operation: str,
    source_ip: str | None,
) -> dict[str, Any]:
    """The `Send` event record of the email moto just accepted as `message_id`."""
    message = next(m for m in reversed(backend.sent_messages) if m.id == message_id)
    if isinstance(message, RawMessage):
        parsed = email.message_from_string(message.raw_data)
        headers = [(name, str(value)) for name, value in parsed.items()]
        recipients = [address for _, address in getaddresses(message.destinations)]
        recipients = list(dict.fromkeys(recipients))  # moto adds the headers' to the call's
    else:
        addresses = message.destinations
        headers = [("From", message.source)]
        headers += [
            (header, ", ".join(addresses[field]))
            for header, field in (("To", "ToAddresses"), ("Cc", "CcAddresses"))
            if addresses.get(field)
        ]
        headers.append(("Subject", message.subject))
        recipients = [
            a
            for field in ("ToAddresses", "CcAddresses", "BccAddresses")
            for a in addresses.get(field, [])
        ]
    _, sender = parseaddr(message.source)
    domain = sender.rpartition("@")[2]
    identity = sender if sender in backend.email_identities else domain
    all_tags = {
        "ses:operation": [operation],
        "ses:configuration-set": [configuration_set],
        "ses:from-domain": [domain],
    }
    if source_ip:
        all_tags["ses:source-ip"] = [source_ip]
    all_tags |= {name: [value] for name, value in tags}
    return {
        "eventType": "Send",
        "mail": {
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "source": message.source,
            "sourceArn": f"arn:{backend.partition}:ses:{backend.region_name}:"
            f"{backend.account_id}:identity/{identity}",
            "sendingAccountId": backend.account_id,
            "messageId": message_id,
            "destination": recipients,
            "headersTruncated": False,
            "headers": [{"name": name, "value": value} for name, value in headers],
            "commonHeaders": _common_headers(headers, message_id),
            "tags": all_tags,
        },
        "send": {},
    }


def _common_headers(headers: list[tuple[str, str]], message_id: str) -> dict[str, Any]:
    """SES's digest of the usual headers; `messageId` is the email's own Message-ID, if any."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    common: dict[str, Any] = {}
    for header, key in (("from", "from"), ("reply-to", "replyTo"), ("to", "to"), ("cc", "cc")):
        if header in values:
            common[key] = [formataddr(a) for a in getaddresses(values[header])]
    common["messageId"] = values.get("message-id", [message_id])[0]
    for header, key in (("subject", "subject"), ("date", "date")):
        if header in values:
            common[key] = values[header][0]
    return common


if __name__ == "__main__":
    main()
