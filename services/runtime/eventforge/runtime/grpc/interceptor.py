"""The server's one interceptor: everything a call needs around it, in a single pass.

Per call, in order: the caller's trace context and baggage, the request id, one SERVER span,
authorization (with mTLS), the deadline, then the handler; on the way out, service errors
mapped to status codes (bounded in size, `rich_status`), one access-log line and the
`rpc.server.duration` metric. One interceptor instead of one per job: each layer re-wrapped
the handler and cost a share of a small call's CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, NoReturn
from urllib.parse import unquote

import grpc
import grpc.aio
from google.rpc import code_pb2, status_pb2
from opentelemetry import baggage, context, propagate, trace

from eventforge.runtime import errors
from eventforge.runtime.context import (
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    current_request_id,
    request_id_or_new,
)
from eventforge.runtime.db import database_unavailable
from eventforge.runtime.grpc.handlers import Aborted, Behaviour, run_behaviour, wrap_handler
from eventforge.runtime.grpc.rich_status import plain_status, status_of, to_grpc
from eventforge.runtime.metrics import Metrics, process_metrics

log = logging.getLogger("eventforge.grpc")

_LOOPBACK = ("127.0.0.1", "[::1]")

Authorize = Callable[[str, Any], None]
"""Raise `errors.PermissionDenied` unless the call's peer may call the method."""


ServicerContext = grpc.aio.ServicerContext[Any, Any]


def status_code(context: ServicerContext) -> grpc.StatusCode | None:
    """The code the call was aborted with so far."""
    code: grpc.StatusCode | None = context.code()
    return code


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Trace, request id, authorization, deadline, error mapping, access log and metric.

    Runs on the asyncio server: `async def` servicer methods on its loop, plain ones in
    `executor` (`handlers.run_behaviour`).
    """

    def __init__(
        self,
        *,
        authorize: Authorize | None = None,
        metrics: Metrics | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.authorize = authorize
        self.metrics = metrics or process_metrics()
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.executor = executor

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())

        async def unary(behaviour: Behaviour, request: Any, servicer: ServicerContext) -> Any:
            return await self._call(method, metadata, behaviour, request, servicer)

        async def check(servicer: ServicerContext) -> None:
            # Streamed answers (health Watch, reflection) outlive this call: checked, not traced.
            try:
                if self.authorize is not None:
                    self.authorize(method, servicer)
            except errors.ServiceError as error:
                await _abort(servicer, status_of(error))

        return wrap_handler(handler, unary, check)

    async def _call(
        self,
        method: str,
        metadata: Mapping[str, Any],
        behaviour: Behaviour,
        request: Any,
        servicer: ServicerContext,
    ) -> Any:
        started = time.perf_counter()
        remote = propagate.extract(metadata)
        incoming = metadata.get(REQUEST_ID_HEADER) or baggage.get_baggage(REQUEST_ID_KEY, remote)
        request_id = request_id_or_new(incoming)
        current = baggage.set_baggage(REQUEST_ID_KEY, request_id, remote)
        peer = servicer.peer()
        span = self.tracer.start_span(
            method, current, trace.SpanKind.SERVER, _attributes(method, peer, request_id)
        )
        token = context.attach(trace.set_span_in_context(span, current))
        code = grpc.StatusCode.OK
        try:
            servicer.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            return await self._checked(method, behaviour, request, servicer)
        except BaseException:
            code = status_code(servicer) or grpc.StatusCode.UNKNOWN
            raise
        finally:
            # Still in the call's context: the access-log line carries its trace and request id.
            self._finish(method, span, code, servicer, started, peer)
            context.detach(token)

    async def _checked(
        self, method: str, behaviour: Behaviour, request: Any, servicer: ServicerContext
    ) -> Any:
        try:
            if self.authorize is not None:
                self.authorize(method, servicer)
            remaining = servicer.time_remaining()  # None: the caller set no deadline
            if remaining is not None and remaining <= 0:
                raise errors.DeadlineExceeded(f"deadline passed before {method} started")
            return await run_behaviour(behaviour, request, servicer, self.executor)
        except grpc.aio.AbortError:  # aborted by the handler itself
            raise
        except errors.ServiceError as error:
            await _abort(servicer, status_of(error))
        except Aborted as aborted:  # a plain handler's context.abort
            await servicer.abort(aborted.code, aborted.details)
        except Exception as error:
            request_id = current_request_id()
            if database_unavailable(error):
                # The database is down or dropped the connection: a retry may well succeed.
                log.warning("database unavailable in %s: %s", method, error, exc_info=True)
                message = f"database unavailable; retry (request id {request_id})"
                await _abort(servicer, plain_status(code_pb2.UNAVAILABLE, message))
            trace.get_current_span().record_exception(error)
            log.exception("unhandled error in %s", method)
            message = f"internal error (request id {request_id})"
            await _abort(servicer, plain_status(code_pb2.INTERNAL, message))
        return None  # pragma: no cover - abort always raises

    def _finish(
        self,
        method: str,
        span: trace.Span,
        code: grpc.StatusCode,
        servicer: ServicerContext,
        started: float,
        peer: str,
    ) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code is not grpc.StatusCode.OK:
                details = servicer.details()
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


async def _abort(servicer: ServicerContext, status: status_pb2.Status) -> NoReturn:
    """End the call with `status`, the request id still in its trailing metadata."""
    wire = to_grpc(status)
    trailing = tuple(wire.trailing_metadata)
    request_id = current_request_id()
    if request_id:
        trailing += ((REQUEST_ID_HEADER, str(request_id)),)
    servicer.set_trailing_metadata(trailing)
    await servicer.abort(wire.code, wire.details)
