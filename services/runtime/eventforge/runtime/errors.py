"""Errors the service layer raises; entrypoints map them to transport status codes."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request (a dotted path such as `items[2].quantity`)."""

    field: str
    description: str


class ServiceError(Exception):
    """A failure the caller can act on; subclasses name the kind."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request is malformed; `violations` says which fields and why."""

    def __init__(self, violations: list[FieldViolation], message: str = "invalid request") -> None:
        super().__init__(message)
        self.violations = violations


class NotFound(ServiceError):
    """The named resource does not exist."""


class AlreadyExists(ServiceError):
    """The resource exists, or the idempotency key was used for a different request."""


class FailedPrecondition(ServiceError):
    """The resource is not in a state that allows the operation."""


class PermissionDenied(ServiceError):
    """The caller may not perform the operation."""


class Unavailable(ServiceError):
    """A dependency is down; retrying later may succeed."""


class DeadlineExceeded(ServiceError):
    """The caller's deadline passed before the work could be done."""


class Violations:
    """Collects field violations while validating a request; `raise_if_any` ends validation."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def check(self, condition: bool, field: str, description: str) -> bool:
        """Record a violation unless `condition` holds; returns `condition`."""
        if not condition:
            self.add(field, description)
        return condition

    def check_text(self, field: str, value: str, *, limit: int) -> bool:
        """Human text: at most `limit` characters and no control characters (NUL included)."""
        fits = self.check(len(value) <= limit, field, f"must be at most {limit} characters")
        clean = self.check(not _CONTROL.search(value), field, "must not contain control characters")
        return fits and clean

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
