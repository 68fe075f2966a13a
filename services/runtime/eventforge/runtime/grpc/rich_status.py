"""Error statuses bounded in size: a default gRPC client drops trailing metadata over 8 KiB."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from eventforge.runtime import errors

MAX_MESSAGE_BYTES = 256
"""grpc-message, UTF-8 (at most three times as long once percent-encoded on the wire)."""
MAX_VIOLATIONS = 20
"""Field violations listed in the BadRequest detail; the rest are counted."""
MAX_TEXT_BYTES = 200
"""One violation's field, or its description, UTF-8."""
MAX_VIOLATIONS_BYTES = 2048
"""The listed violations, encoded: the whole Status stays under 3 KiB (4 KiB in base64)."""
TRUNCATED_FIELD = "_truncated"
"""Field of the last violation when some were left out: "N more violations not shown"."""

CODES: dict[type[errors.ServiceError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
}
"""The google.rpc code of each kind of service error."""

_ELLIPSIS = "..."
_MESSAGE_PART_BYTES = 96  # field, and description, of the first violation in grpc-message


def clip(text: str, limit: int) -> str:
    """`text` if its UTF-8 fits in `limit` bytes, else its longest prefix that does with '...'."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    cut = encoded[: limit - len(_ELLIPSIS)].decode("utf-8", "ignore")
    return cut + _ELLIPSIS


def status_of(error: errors.ServiceError) -> status_pb2.Status:
    """The google.rpc.Status of a service error; invalid arguments with a BadRequest detail."""
    code = next(code for kind, code in CODES.items() if isinstance(error, kind))
    if not isinstance(error, errors.InvalidArgument):
        return plain_status(code, error.message)
    return status_pb2.Status(
        code=code,
        message=clip(summary(error.message, error.violations), MAX_MESSAGE_BYTES),
        details=[bad_request(error.violations)],
    )


def plain_status(code: int, message: str) -> status_pb2.Status:
    """A status without details (internal errors, an unavailable database)."""
    return status_pb2.Status(code=code, message=clip(message, MAX_MESSAGE_BYTES))


def summary(message: str, violations: Sequence[errors.FieldViolation]) -> str:
    """The grpc-message: how many violations, and the first."""
    if not violations:
        return message
    first = violations[0]
    about = (
        f"{clip(first.field, _MESSAGE_PART_BYTES)}: {clip(first.description, _MESSAGE_PART_BYTES)}"
    )
    if len(violations) == 1:
        return f"{message}: {about}"
    return f"{message}: {len(violations)} field violations; first: {about}"


def bad_request(violations: Sequence[errors.FieldViolation]) -> any_pb2.Any:
    """The first violations (clipped) while they fit, and how many more were left out."""
    listed = error_details_pb2.BadRequest()
    size = 0
    for violation in violations[:MAX_VIOLATIONS]:
        item = error_details_pb2.BadRequest.FieldViolation(
            field=clip(violation.field, MAX_TEXT_BYTES),
            description=clip(violation.description, MAX_TEXT_BYTES),
        )
        size += item.ByteSize() + 3  # tag and length prefix
        if size > MAX_VIOLATIONS_BYTES:
            break
        listed.field_violations.append(item)
    left_out = len(violations) - len(listed.field_violations)
    if left_out:
        listed.field_violations.add(
            field=TRUNCATED_FIELD,
            description=f"{left_out} more violation{'s' * (left_out != 1)} not shown",
        )
    detail = any_pb2.Any()
    detail.Pack(listed)
    return detail


def to_grpc(status: status_pb2.Status) -> grpc.Status:
    """What goes on the wire: the code, grpc-message and grpc-status-details-bin."""
    wire: grpc.Status = rpc_status.to_status(status)
    return wire
