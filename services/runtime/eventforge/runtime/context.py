"""The request id, carried in W3C baggage so it rides every hop with the trace context."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import baggage, context

REQUEST_ID_KEY = "request_id"
REQUEST_ID_HEADER = "x-request-id"

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    """A fresh request id for a call that arrived without one."""
    return uuid.uuid4().hex


def request_id_or_new(incoming: object) -> str:
    """The caller's request id if it is a plausible one (1 to 128 of `A-Za-z0-9._:-`), else a
    fresh one: a request id goes into logs, spans and message attributes as it is."""
    if isinstance(incoming, str) and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return new_request_id()


def current_request_id() -> str | None:
    """The request id of the current context, if any."""
    value = baggage.get_baggage(REQUEST_ID_KEY)
    return str(value) if value is not None else None


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Make `request_id` current (in baggage) for the duration of the block."""
    token = context.attach(baggage.set_baggage(REQUEST_ID_KEY, request_id))
    try:
        yield
    finally:
        context.detach(token)
