"""Why a webhook delivery is refused: one class per reason, each with its own problem type.

The HTTP entrypoint answers each with its status and an RFC 9457 problem body; none is a
server error, so a provider never retries a delivery that cannot succeed because of the server.
"""

from __future__ import annotations

from typing import ClassVar


class Refused(Exception):
    """A delivery ingest does not record; `slug` names the problem type, `status` its code."""

    slug: ClassVar[str]
    status: ClassVar[int]
    title: ClassVar[str]

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownSource(Refused):
    slug, status, title = "unknown-source", 404, "Unknown webhook source"


class UnsupportedMediaType(Refused):
    slug, status, title = "unsupported-media-type", 415, "Webhook body must be JSON"


class BodyTooLarge(Refused):
    slug, status, title = "body-too-large", 413, "Webhook body too large"


class BadSignature(Refused):
    slug, status, title = "bad-signature", 401, "Missing or invalid webhook signature"


class StaleSignature(Refused):
    slug, status, title = "stale-signature", 401, "Signed timestamp outside the tolerance"


class StaleEvent(Refused):
    slug, status, title = "stale-event", 401, "Event too old to tell from a replay"


class MalformedPayload(Refused):
    slug, status, title = "malformed-payload", 400, "Webhook payload is not what its source sends"


class InvalidPayload(Refused):
    slug, status, title = "invalid-payload", 422, "Webhook payload has invalid values"
