"""Error statuses stay small whatever the violations: a default gRPC client drops big trailers."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from eventforge.runtime import errors
from eventforge.runtime.grpc import rich_status

WIRE_BUDGET = 5 * 1024  # well under the 8 KiB from which a default client may drop trailers
REQUEST_ID_BYTES = len("x-request-id") + 128


def invalid(
    count: int, field: str = "items[{i}].sku", description: str = "unknown SKU"
) -> status_pb2.Status:
    violations = [
        errors.FieldViolation(field.format(i=i), description.format(i=i)) for i in range(count)
    ]
    return rich_status.status_of(errors.InvalidArgument(violations))


def listed(status: status_pb2.Status) -> list[tuple[str, str]]:
    (detail,) = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    return [(v.field, v.description) for v in bad_request.field_violations]


def wire_bytes(status: status_pb2.Status) -> int:
    """grpc-message (percent-encoded), grpc-status-details-bin (base64) and a request id."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in status.message.encode())
    details = len(base64.b64encode(status.SerializeToString()))
    return (
        len("grpc-message") + message + len("grpc-status-details-bin") + details + REQUEST_ID_BYTES
    )


def test_a_few_violations_are_all_listed_and_summarised() -> None:
    status = invalid(3)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert listed(status) == [(f"items[{i}].sku", "unknown SKU") for i in range(3)]
    assert status.message == "invalid request: 3 field violations; first: items[0].sku: unknown SKU"
    assert invalid(1).message == "invalid request: items[0].sku: unknown SKU"


@pytest.mark.parametrize("count", [22, 35, 500, 100_000])
def test_many_violations_list_the_first_and_count_the_rest(count: int) -> None:
    status = invalid(count)
    found = listed(status)
    assert len(found) == rich_status.MAX_VIOLATIONS + 1
    assert found[:-1] == [(f"items[{i}].sku", "unknown SKU") for i in range(20)]
    assert found[-1] == (rich_status.TRUNCATED_FIELD, f"{count - 20} more violations not shown")
    assert status.message.startswith(f"invalid request: {count} field violations; first: ")
    assert wire_bytes(status) < WIRE_BUDGET


def test_exactly_the_limit_is_not_truncated_and_one_over_counts_one() -> None:
    assert len(listed(invalid(rich_status.MAX_VIOLATIONS))) == rich_status.MAX_VIOLATIONS
    assert listed(invalid(rich_status.MAX_VIOLATIONS + 1))[-1] == (
        rich_status.TRUNCATED_FIELD,
        "1 more violation not shown",
    )


@pytest.mark.parametrize("text", ["f" * 100_000, "é" * 50_000, "\U0001f600" * 30_000])
@pytest.mark.parametrize("count", [1, 3, 50, 5_000])
def test_huge_fields_and_descriptions_are_clipped_within_budget(text: str, count: int) -> None:
    violations = [errors.FieldViolation(f"{text}{i}", f"{text}!") for i in range(count)]
    status = rich_status.status_of(errors.InvalidArgument(violations, message=text))
    assert len(status.message.encode()) <= rich_status.MAX_MESSAGE_BYTES
    assert wire_bytes(status) < WIRE_BUDGET
    found = listed(status)
    shown = [v for v in found if v[0] != rich_status.TRUNCATED_FIELD]
    assert shown, "at least one violation is always shown"
    for field, description in shown:
        assert len(field.encode()) <= rich_status.MAX_TEXT_BYTES
        assert len(description.encode()) <= rich_status.MAX_TEXT_BYTES
        assert field.endswith("...")
        assert description.endswith("...")
    if len(shown) < count:
        assert found[-1][0] == rich_status.TRUNCATED_FIELD
        assert found[-1][1].startswith(f"{count - len(shown)} more violation")
    else:
        assert len(found) == count


def test_an_invalid_argument_without_violations_keeps_an_empty_bad_request() -> None:
    status = rich_status.status_of(errors.InvalidArgument([], message="bad"))
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == "bad"
    assert listed(status) == []


def test_other_errors_carry_their_code_and_a_clipped_message_only() -> None:
    assert rich_status.status_of(errors.NotFound("order o-1 not found")) == status_pb2.Status(
        code=code_pb2.NOT_FOUND, message="order o-1 not found"
    )
    long = rich_status.status_of(errors.FailedPrecondition("x" * 10_000))
    assert long.code == code_pb2.FAILED_PRECONDITION
    assert len(long.message) == rich_status.MAX_MESSAGE_BYTES
    assert not long.details
    internal = rich_status.plain_status(code_pb2.INTERNAL, "internal error (request id r)")
    wire = rich_status.to_grpc(internal)
    assert wire.code == grpc.StatusCode.INTERNAL
    assert wire.details == "internal error (request id r)"
    assert dict(wire.trailing_metadata)["grpc-status-details-bin"] == internal.SerializeToString()


def test_every_service_error_kind_has_a_code() -> None:
    kinds = errors.ServiceError.__subclasses__()
    assert set(kinds) == set(rich_status.CODES)


def test_clip_cuts_on_character_boundaries() -> None:
    assert rich_status.clip("abc", 3) == "abc"
    assert rich_status.clip("abcdef", 5) == "ab..."
    assert rich_status.clip("é" * 10, 8) == "éé..."  # 2 bytes each: 5 bytes kept, one dropped
    assert rich_status.clip("\ud800x", 10) == "?x"  # a lone surrogate cannot be encoded
