"""What an upload may be, and whether the bytes that arrived are what the client declared.

Presigned-URL conditions are enforced by S3 but are not a security boundary (and emulators
ignore them), so every upload is verified again here, from its bytes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PDF = "application/pdf"
TEXT_TYPES = frozenset({"text/plain", "text/csv"})
ALLOWED_TYPES = IMAGE_TYPES | {PDF} | TEXT_TYPES
"""Content types CreateUpload accepts."""

ARRIVAL_TOLERANCE = timedelta(seconds=60)
"""Clock skew allowed between object storage and this service when checking arrival times."""

# Magic numbers: (offset, signature, content type). Executables and archives are named so the
# rejection reason says what arrived; none of them is allowed.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", PDF),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
)
_WEBP = re.compile(rb"^RIFF.{4}WEBP", re.DOTALL)
# C0 controls other than tab, line feed, form feed and carriage return, and DEL.
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
OCTET_STREAM = "application/octet-stream"


def sniff(data: bytes) -> str:
    """The content type the bytes themselves show (text is `text/plain`)."""
    for offset, signature, content_type in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return content_type
    if _WEBP.match(data):
        return "image/webp"
    if is_text(data):
        return "text/plain"
    return OCTET_STREAM


def is_text(data: bytes) -> bool:
    """Strict UTF-8 without the control characters that only binary data contains."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not _BINARY_CONTROLS.search(text)


def type_matches(declared: str, detected: str) -> bool:
    """Whether sniffed bytes support the declared type (CSV is text: it sniffs as text/plain)."""
    if declared in TEXT_TYPES:
        return detected == "text/plain"
    return declared == detected


def check_arrival(
    *,
    declared_size: int,
    max_size: int,
    size: int,
    arrived_at: datetime,
    upload_expires_at: datetime | None,
) -> str | None:
    """Why an object's metadata disqualifies it before its bytes are read; None if it does not."""
    if size > max_size:
        return f"object is {size} bytes, over the {max_size}-byte limit"
    if size != declared_size:
        return f"object is {size} bytes but {declared_size} were declared"
    if upload_expires_at is not None and arrived_at > upload_expires_at + ARRIVAL_TOLERANCE:
        return "object arrived after the upload URL expired"
    return None


def check_content(*, declared_type: str, declared_size: int, data: bytes) -> str | None:
    """Why the bytes disqualify the upload; None if they match what was declared."""
    if len(data) != declared_size:
        return f"object is {len(data)} bytes but {declared_size} were declared"
    detected = sniff(data)
    if not type_matches(declared_type, detected):
        return f"content is {detected}, not the declared {declared_type}"
    return None
