"""SES `Send` event records, as SES publishes them to a configuration set's SNS destination.

Both local emulators need them (neither publishes SES events by itself): the notifier learns
from a `Send` event that SES accepted an email whose answer it never recorded. The format is
SES's documented one:
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
"""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.utils import formataddr, getaddresses, parseaddr
from typing import Any

SNS_SUBJECT = "Amazon SES Email Event Notification"
"""The SNS subject of SES's event notifications: AWS's documentation shows only the record (the
SNS message), but the notifications SES publishes carry this subject in their envelope."""


def simple_headers(
    source: str, to: list[str], cc: list[str], subject: str
) -> list[tuple[str, str]]:
    """The headers SES writes for a `SendEmail` (not raw) message."""
    headers = [("From", source)]
    headers += [(name, ", ".join(values)) for name, values in (("To", to), ("Cc", cc)) if values]
    headers.append(("Subject", subject))
    return headers


def raw_headers(raw: str) -> list[tuple[str, str]]:
    """The headers of a raw MIME message."""
    return [(name, str(value)) for name, value in email.message_from_string(raw).items()]


def raw_recipients(headers: list[tuple[str, str]], destinations: list[str]) -> list[str]:
    """A raw message's recipients: the call's destinations, else its To, Cc and Bcc headers."""
    if destinations:
        found = [address for _, address in getaddresses(destinations)]
    else:
        wanted = {"to", "cc", "bcc"}
        found = [a for _, a in getaddresses([v for n, v in headers if n.lower() in wanted])]
    return list(dict.fromkeys(found))


def send_event_record(
    *,
    message_id: str,
    source: str,
    headers: list[tuple[str, str]],
    recipients: list[str],
    configuration_set: str,
    tags: list[tuple[str, str]],
    operation: str,
    source_ip: str | None,
    account: str,
    region: str,
    verified_identities: frozenset[str] = frozenset(),
    partition: str = "aws",
) -> dict[str, Any]:
    """The `Send` event record of an email SES accepted as `message_id`.

    `mail.tags` holds the call's tags as `{name: [value]}` plus SES's own `ses:operation`,
    `ses:configuration-set`, `ses:from-domain` and `ses:source-ip` (not `ses:caller-identity`:
    an emulator accepts any credentials, so there is no IAM identity to name).
    """
    _, sender = parseaddr(source)
    domain = sender.rpartition("@")[2]
    identity = sender if sender in verified_identities else domain
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
            "source": source,
            "sourceArn": f"arn:{partition}:ses:{region}:{account}:identity/{identity}",
            "sendingAccountId": account,
            "messageId": message_id,
            "destination": recipients,
            "headersTruncated": False,
            "headers": [{"name": name, "value": value} for name, value in headers],
            "commonHeaders": common_headers(headers, message_id),
            "tags": all_tags,
        },
        "send": {},
    }


def common_headers(headers: list[tuple[str, str]], message_id: str) -> dict[str, Any]:
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


def publishes_send(destination: dict[str, Any]) -> str | None:
    """The topic of an event destination that is enabled, SNS and matches `send`, else None."""
    enabled = str(destination.get("Enabled", False)).lower() == "true"  # SES's default: off
    types = {str(t).lower() for t in destination.get("MatchingEventTypes", [])}
    sns = destination.get("SNSDestination")
    if enabled and "send" in types and sns:
        return str(sns["TopicARN"])
    return None
