"""Validation of files requests: every problem becomes a field violation."""

from __future__ import annotations

import re
import unicodedata

from eventforge.files.domain.commands import RequestDownload, RequestUpload
from eventforge.files.domain.content import ALLOWED_TYPES
from eventforge.runtime.errors import Violations

MAX_FILE_NAME = 255
METHODS = ("POST", "PUT")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")
_VARIANT = re.compile(r"^[a-z0-9_-]{1,32}$")
# Bidirectional overrides and isolates let "photo\u202egnp.exe" display as "photoexe.png".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_uuid(violations: Violations, field: str, value: str, what: str) -> bool:
    return violations.check(bool(_UUID.match(value)), field, f"must be {what} (a lowercase UUID)")


def file_name_problem(name: str) -> str | None:
    """Why a client's file name is unacceptable, or None."""
    if not 1 <= len(name) <= MAX_FILE_NAME:
        return f"must be 1-{MAX_FILE_NAME} characters"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "must be a bare file name, without path separators"
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in name):
        return "must not contain control characters"
    return None


def check_upload(command: RequestUpload, *, max_bytes: int) -> Violations:
    v = Violations()
    problem = file_name_problem(command.file_name)
    v.check(problem is None, "file_name", problem or "")
    v.check(
        command.content_type in ALLOWED_TYPES,
        "content_type",
        f"must be one of {', '.join(sorted(ALLOWED_TYPES))}",
    )
    v.check(
        1 <= command.size_bytes <= max_bytes,
        "size_bytes",
        f"must be between 1 and {max_bytes} bytes",
    )
    v.check(
        command.method in ("", *METHODS),
        "method",
        "must be UPLOAD_METHOD_POST or UPLOAD_METHOD_PUT",
    )
    if command.notify_email:
        v.check(
            len(command.notify_email) <= 254 and bool(_EMAIL.match(command.notify_email)),
            "notify_email",
            "must be an email address",
        )
    return v


def check_download(command: RequestDownload) -> Violations:
    v = Violations()
    if command.file_id:
        check_uuid(v, "file_id", command.file_id, "a file id")
    elif command.receipt_order_id:
        check_uuid(v, "receipt_order_id", command.receipt_order_id, "an order id")
    else:
        v.add("target", "set file_id or receipt_order_id")
    if command.variant:
        v.check(
            bool(_VARIANT.match(command.variant)),
            "variant",
            "must be an output name such as thumbnail, or empty for the original",
        )
    return v
