"""The server's one interceptor: everything a call needs around it, in a single pass.

Per call, in order: the caller's trace context and baggage, the request id, one SERVER span,
authorization (with mTLS), the deadline, then the handler; on the way out, service errors
mapped to status codes (bounded in size, `rich_status`), one access-log line and the
`rpc.server.duration` metric. One interceptor instead of one per job: each layer re-wrapped
the handler and cost a share of a small call's CPU.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import grpc
from google.rpc import code_pb2, status_pb2
from opentelemetry import baggage, context, propagate, trace

from eventforge.runtime import errors
from eventforge.runtime.context import (
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    current_request_id,
    new_request_id,
)
from eventforge.runtime.db import database_unavailable
from eventforge.runtime.grpc.handlers import Behaviour, wrap_handler
from eventforge.runtime.grpc.rich_status import plain_status, status_of, to_grpc
from eventforge.runtime.metrics import Metrics, process_metrics

log = logging.getLogger("eventforge.grpc")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_LOOPBACK = ("127.0.0.1", "[::1]")

Authorize = Callable[[str, grpc.ServicerContext], None]
"""Raise `errors.PermissionDenied` unless the call's peer may call the method."""


def status_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code the call was aborted with so far (grpcio has `code()`; its stubs lack it)."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    return code


class CallInterceptor(grpc.ServerInterceptor):
    """Trace, request id, authorization, deadline, error mapping, access log and metric."""

    def __init__(
        self,
        *,
        authorize: Authorize | None = None,
        metrics: Metrics | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.authorize = authorize
        self.metrics = metrics or process_metrics()
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        # Streamed answers (health Watch, reflection) outlive this call: checked, not traced.
        traced = not handler.response_streaming

        def around(behaviour: Behaviour, request: Any, servicer: grpc.ServicerContext) -> Any:
            return self._call(method, metadata, behaviour, request, servicer, traced=traced)

        return wrap_handler(handler, around)

    def _call(
        self,
        method: str,
        metadata: Mapping[str, Any],
        behaviour: Behaviour,
        request: Any,
        servicer: grpc.ServicerContext,
        *,
        traced: bool,
    ) -> Any:
        started = time.perf_counter()
        remote = propagate.extract(metadata)
        incoming = metadata.get(REQUEST_ID_HEADER) or baggage.get_baggage(REQUEST_ID_KEY, remote)
        request_id = (
            incoming
            if isinstance(incoming, str) and _VALID_REQUEST_ID.match(incoming)
            else new_request_id()
        )
        current = baggage.set_baggage(REQUEST_ID_KEY, request_id, remote)
        peer = servicer.peer()
        span: trace.Span = trace.INVALID_SPAN
        if traced:
            span = self.tracer.start_span(
                method, current, trace.SpanKind.SERVER, _attributes(method, peer, request_id)
            )
            current = trace.set_span_in_context(span, current)
        token = context.attach(current)
        code = grpc.StatusCode.OK
        try:
            servicer.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            return self._checked(method, behaviour, request, servicer)
        except BaseException:
            code = status_code(servicer) or grpc.StatusCode.UNKNOWN
            raise
        finally:
            # Still in the call's context: the access-log line carries its trace and request id.
            self._finish(method, span, code, servicer, started, peer)
            context.detach(token)

    def _checked(
        self, method: str, behaviour: Behaviour, request: Any, servicer: grpc.ServicerContext
    ) -> Any:
        try:
            if self.authorize is not None:
                self.authorize(method, servicer)
            if servicer.time_remaining() <= 0:
                raise errors.DeadlineExceeded(f"deadline passed before {method} started")
            return behaviour(request, servicer)
        except errors.ServiceError as error:
            _abort(servicer, status_of(error))
        except Exception as error:
            if status_code(servicer) is not None:  # aborted by the handler itself
                raise
            request_id = current_request_id()
            if database_unavailable(error):
                # The database is down or dropped the connection: a retry may well succeed.
                log.warning("database unavailable in %s: %s", method, error, exc_info=True)
                message = f"database unavailable; retry (request id {request_id})"
                _abort(servicer, plain_status(code_pb2.UNAVAILABLE, message))
            trace.get_current_span().record_exception(error)
            log.exception("unhandled error in %s", method)
            message = f"internal error (request id {request_id})"
            _abort(servicer, plain_status(code_pb2.INTERNAL, message))
        return None  # pragma: no cover - abort always raises

    def _finish(
        self,
        method: str,
        span: trace.Span,
        code: grpc.StatusCode,
        servicer: grpc.ServicerContext,
        started: float,
        peer: str,
    ) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code is not grpc.StatusCode.OK:
                details = servicer.details()  # type: ignore[attr-defined]
                span.set_status(trace.StatusCode.ERROR, f"{code.name}: {details or ''}")
            span.end()
        self.metrics.rpc_server(method, code, duration_ms)
        log.info(
            "%s %s",
            method,
            code.name,
            extra={
                "grpc_method": method,
                "grpc_code": code.name,
                "duration_ms": round(duration_ms, 3),
                "peer": peer,
            },
        )


def _attributes(method: str, peer: str, request_id: str) -> dict[str, str | int]:
    """The RPC semantic conventions' attributes of a server span, and the request id."""
    service, _, name = method.lstrip("/").partition("/")
    attributes: dict[str, str | int] = {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": name,
        REQUEST_ID_KEY: request_id,
    }
    # "ipv4:127.0.0.1:57284" or "ipv6:[::1]:57284"; unix sockets have no address.
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        ip, _, port = address.rpartition(":")
        attributes["net.peer.ip"] = unquote(ip)
        attributes["net.peer.port"] = port
        if ip in _LOOPBACK:
            attributes["net.peer.name"] = "localhost"
    return attributes


def _abort(servicer: grpc.ServicerContext, status: status_pb2.Status) -> None:
    """End the call with `status`, the request id still in its trailing metadata."""
    wire = to_grpc(status)
    trailing = tuple(wire.trailing_metadata)
    request_id = current_request_id()
    if request_id:
        trailing += ((REQUEST_ID_HEADER, str(request_id)),)
    servicer.set_trailing_metadata(trailing)
    servicer.abort(wire.code, wire.details)
