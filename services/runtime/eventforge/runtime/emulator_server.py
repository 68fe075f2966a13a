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

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto import server
from moto.ses.exceptions import ConfigurationSetDoesNotExist, NotFoundException
from moto.ses.models import RawMessage, SESBackend, ses_backends
from moto.ses.responses import EmailResponse
from moto.sesv2.responses import SESV2Response
from moto.sns.exceptions import SNSNotFoundError
from moto.sns.models import sns_backends

from eventforge.runtime.ses_events import (
    SNS_SUBJECT,
    publishes_send,
    raw_headers,
    raw_recipients,
    send_event_record,
    simple_headers,
)

logger = logging.getLogger("eventforge.emulator")

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
    return [topic for d in destinations if (topic := publishes_send(d)) is not None]


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
        headers = raw_headers(message.raw_data)
        recipients = raw_recipients(headers, message.destinations)
    else:
        addresses = message.destinations
        headers = simple_headers(
            message.source,
            addresses.get("ToAddresses", []),
            addresses.get("CcAddresses", []),
            message.subject,
        )
        recipients = [
            a
            for field in ("ToAddresses", "CcAddresses", "BccAddresses")
            for a in addresses.get(field, [])
        ]
    return send_event_record(
        message_id=message_id,
        source=message.source,
        headers=headers,
        recipients=recipients,
        configuration_set=configuration_set,
        tags=tags,
        operation=operation,
        source_ip=source_ip,
        account=backend.account_id,
        region=backend.region_name,
        verified_identities=frozenset(backend.email_identities),
        partition=backend.partition,
    )


if __name__ == "__main__":
    main()
