"""Signature schemes of webhook providers: HMAC-SHA256, compared in constant time.

- `TimestampedHmac` (Stripe-style): one header `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, the
  hex HMAC-SHA256 of `f"{t}.{body}"`; a timestamp further than the tolerance from the clock is
  refused as stale, so a captured delivery cannot be replayed later. A provider rotating its
  secret signs with both for a while: several `v1` values, any of which may match.
- `BodyHmac` (GitHub-style): one header `sha256=<hex>`, the hex HMAC-SHA256 of the body alone.
  It signs no time: replays are caught by the event id only (see `sources`).

Each scheme accepts several secrets of the receiving side too (ingest's own rotation). Every
candidate pair is compared with `hmac.compare_digest`, and all of them always are: the time a
check takes tells nothing about how close a forged signature came.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eventforge.ingest.domain.refusals import BadSignature, StaleSignature

MAX_SIGNATURES = 8
"""Signature values one header may carry; more is refused before any HMAC is computed."""


def hmac_hex(secret: str, message: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of `message`, keyed with the UTF-8 `secret`."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def any_matches(expected: Sequence[str], presented: Sequence[str]) -> bool:
    """Whether any presented signature equals any expected one, comparing every pair."""
    matched = False
    for want in expected:
        for given in presented:
            matched |= hmac.compare_digest(want.encode(), given.encode())
    return matched


@dataclass(frozen=True)
class TimestampedHmac:
    """`t=…,v1=…` in one header over `timestamp.body`, with a tolerance on the timestamp."""

    header: str
    tolerance_seconds: int = 300

    def sign(self, secret: str, timestamp: int, body: bytes) -> str:
        """The header value a provider sends (tests, clients and the README use it)."""
        return f"t={timestamp},v1={hmac_hex(secret, f'{timestamp}.'.encode() + body)}"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        """Raise BadSignature or StaleSignature unless the delivery is signed, and recent."""
        value = headers.get(self.header.lower())
        if not value:
            raise BadSignature(f"no {self.header} header")
        timestamp, signatures = _timestamped_parts(value, self.header)
        if abs(now - timestamp) > self.tolerance_seconds:
            raise StaleSignature(
                f"{self.header} timestamp {timestamp} is more than {self.tolerance_seconds} s "
                "from the server's clock"
            )
        message = f"{timestamp}.".encode() + body
        if not any_matches([hmac_hex(secret, message) for secret in secrets], signatures):
            raise BadSignature(f"{self.header} matches none of the source's secrets")


def _timestamped_parts(value: str, header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isdigit() and len(item) <= 12:
            timestamp = int(item)
        elif key == "v1" and item:
            signatures.append(item)
    if timestamp is None or not signatures:
        raise BadSignature(f"{header} must be t=<unix seconds>,v1=<hex HMAC-SHA256>")
    if len(signatures) > MAX_SIGNATURES:
        raise BadSignature(f"{header} carries more than {MAX_SIGNATURES} signatures")
    return timestamp, signatures


@dataclass(frozen=True)
class BodyHmac:
    """`sha256=<hex>` in one header over the raw body."""

    header: str
    prefix: str = "sha256="

    def sign(self, secret: str, body: bytes) -> str:
        """The header value a provider sends."""
        return self.prefix + hmac_hex(secret, body)

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        """Raise BadSignature unless the body is signed with one of `secrets`."""
        del now  # this scheme signs no time
        value = headers.get(self.header.lower(), "").strip()
        if not value.startswith(self.prefix) or len(value) == len(self.prefix):
            raise BadSignature(f"{self.header} must be {self.prefix}<hex HMAC-SHA256 of the body>")
        presented = [value.removeprefix(self.prefix)]
        if not any_matches([hmac_hex(secret, body) for secret in secrets], presented):
            raise BadSignature(f"{self.header} matches none of the source's secrets")


SignatureScheme = TimestampedHmac | BodyHmac
"""What a source's deliveries are signed with."""
