"""Reading a provider's JSON: a wrong shape is malformed (400), a wrong value invalid (422)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from eventforge.ingest.domain.refusals import InvalidPayload, MalformedPayload

_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_AMOUNT_MINOR = 10**12
MAX_REASON_LENGTH = 500

JsonObject = Mapping[str, Any]


def json_object(body: bytes) -> JsonObject:
    """The body as a JSON object."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedPayload(f"body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedPayload("body is not a JSON object")
    return document


def member(document: JsonObject, name: str, kind: type, where: str = "") -> Any:
    """A required member of JSON type `kind` (bool is no int)."""
    value = document.get(name)
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedPayload(f"{where}{name} must be a JSON {kind.__name__}")
    return value


def identifier(value: str, what: str) -> str:
    """An event or payment id: 1 to 128 of letters, digits and `._:-`."""
    if not _ID.match(value):
        raise InvalidPayload(f"{what} {value[:40]!r} is not 1 to 128 of A-Z a-z 0-9 . _ : -")
    return value


def amount_minor(value: int, what: str = "amount_minor") -> int:
    """An amount in minor units, 0 to 10^12."""
    if not 0 <= value <= MAX_AMOUNT_MINOR:
        raise InvalidPayload(f"{what} {value} is not between 0 and {MAX_AMOUNT_MINOR}")
    return value


def currency(value: str) -> str:
    """An ISO 4217 code, upper case."""
    if not _CURRENCY.match(value):
        raise InvalidPayload(f"currency {value[:10]!r} is not an ISO 4217 code like EUR")
    return value


def reason(value: str) -> str:
    """A provider's reason for a failure: 1 to 500 characters."""
    if not 0 < len(value.strip()) <= MAX_REASON_LENGTH:
        raise InvalidPayload(f"reason must be 1 to {MAX_REASON_LENGTH} characters")
    return value.strip()


def unix_time(value: int, what: str) -> datetime:
    """Unix seconds as an aware datetime."""
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidPayload(f"{what} {value} is not a time in unix seconds") from None


def iso_time(value: str, what: str) -> datetime:
    """An ISO 8601 time with its offset, e.g. 2026-12-08T09:30:00Z."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidPayload(f"{what} {value[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidPayload(f"{what} {value[:40]!r} has no UTC offset")
    return moment.astimezone(UTC)
