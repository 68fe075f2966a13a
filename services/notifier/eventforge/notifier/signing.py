"""Webhook signatures: HMAC-SHA256 over `f"{timestamp}.{body}"`, and the check receivers run.

Only the standard library is used, so a receiver can copy this module as it is.

    EventForge-Timestamp: 1767225600
    EventForge-Signature: v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

The signature is the lowercase hex HMAC-SHA256, keyed with the endpoint's whole signing secret
(UTF-8, `whsec_` prefix included), of the timestamp header's value, a dot, and the raw request
body exactly as received. A header may carry several comma-separated `v1=` values.
"""

from __future__ import annotations

import hashlib
import hmac
import time

VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The `EventForge-Signature` value of `body` sent at `timestamp` (unix seconds)."""
    raw = body.encode() if isinstance(body, str) else body
    message = f"{timestamp}.".encode() + raw
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    signature: str,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `signature` signs `body` at `timestamp` with `secret`, within `tolerance` seconds.

    Pass the `EventForge-Timestamp` and `EventForge-Signature` headers and the raw body. Old or
    future timestamps are refused, so a captured request cannot be replayed later.
    """
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        return False
    expected = sign(secret, sent_at, body)
    candidates = [part.strip() for part in signature.split(",")]
    # compare_digest on every candidate: the time taken says nothing about which was close.
    matches = [hmac.compare_digest(expected.encode(), c.encode()) for c in candidates]
    return any(matches)
