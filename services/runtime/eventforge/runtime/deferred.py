"""Work done later on behalf of an event keeps its cause: the trace and the request id.

Whatever a handler leaves for later (an email, a webhook delivery and its retries) stores the
W3C context current when it was recorded — `capture()`, a `traceparent` / `tracestate` /
`baggage` carrier kept with the pending work, so it survives a restart — and the work runs
inside `resumed(...)`:

- soon after the cause (within `child_within`), its span is a child of the stored context, so
  the work shows on the request's own trace;
- much later (a retry an hour on), it starts a new trace with a span link to the cause, so the
  original trace is not stretched over hours;
- either way the cause's request id is current (baggage, span attribute, log lines, and the
  events the work publishes through the outbox).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Link, SpanKind

from eventforge.runtime.context import REQUEST_ID_KEY, request_context

CHILD_WITHIN = timedelta(minutes=5)
"""Work that starts this soon after its cause continues the cause's trace as a child."""


def capture() -> dict[str, str]:
    """The current trace context and baggage as a carrier to store with pending work."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def dumps(cause: Mapping[str, str]) -> str:
    """A carrier as the text a database column stores ("" for none)."""
    return json.dumps(dict(cause), sort_keys=True) if cause else ""


def loads(text: str | None) -> dict[str, str]:
    """The carrier a column holds; a damaged one is dropped (the work runs untraced), never
    fatal."""
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items()}


def request_id_of(cause: Mapping[str, str]) -> str | None:
    """The request id a stored carrier holds in its baggage, if any."""
    value = baggage.get_baggage(REQUEST_ID_KEY, propagate.extract(dict(cause)))
    return str(value) if value else None


def _cause_request(cause: Mapping[str, str]) -> AbstractContextManager[None]:
    """Make the cause's request id current (no span), e.g. while recording an outcome that a
    provider's event reported: what the block publishes carries it."""
    request_id = request_id_of(cause)
    return request_context(request_id) if request_id else nullcontext()


@contextmanager
def resumed(
    tracer: trace.Tracer,
    name: str,
    cause: Mapping[str, str],
    *,
    caused_at: datetime,
    now: datetime,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    child_within: timedelta = CHILD_WITHIN,
) -> Iterator[trace.Span]:
    """A span for work done on behalf of `cause`, current for the block (see the module)."""
    stored = propagate.extract(dict(cause), context=otel_context.Context())
    request_id = request_id_of(cause)
    cause_span = trace.get_current_span(stored).get_span_context()
    links = list(links)
    parent = stored
    if cause_span.is_valid and now - caused_at > child_within:
        # A new trace, linked to the cause, with the cause's baggage (its request id).
        parent = trace.set_span_in_context(trace.INVALID_SPAN, stored)
        links.append(Link(cause_span, {"eventforge.link": "cause"}))
    span_attributes = dict(attributes or {})
    if request_id:
        span_attributes[REQUEST_ID_KEY] = request_id
    token = otel_context.attach(parent)
    try:
        with (
            _cause_request(cause),
            tracer.start_as_current_span(
                name, kind=kind, attributes=span_attributes, links=links
            ) as span,
        ):
            yield span
    finally:
        otel_context.detach(token)
