"""Server interceptors, one job each: request ids, error mapping, access logs and RPC metrics."""

from __future__ import annotations

import abc
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from eventforge.runtime import errors
from eventforge.runtime.context import (
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    current_request_id,
    new_request_id,
    request_context,
)
from eventforge.runtime.db import database_unavailable
from eventforge.runtime.grpc.handlers import Behaviour, wrap_handler
from eventforge.runtime.metrics import Metrics, process_metrics

log = logging.getLogger("eventforge.grpc")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_CODES: dict[type[errors.ServiceError], tuple[grpc.StatusCode, int]] = {
    errors.InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    errors.NotFound: (grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    errors.AlreadyExists: (grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    errors.FailedPrecondition: (grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    errors.PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    errors.Unavailable: (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    errors.DeadlineExceeded: (grpc.StatusCode.DEADLINE_EXCEEDED, code_pb2.DEADLINE_EXCEEDED),
}


def status_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code the call was aborted with so far (grpcio has `code()`; its stubs lack it)."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    return code


class Interceptor(grpc.ServerInterceptor):
    """Base: run `around(behaviour, request, context)` for every method handler."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())

        def around(behaviour: Behaviour, request: Any, context: grpc.ServicerContext) -> Any:
            return self.around(method, metadata, behaviour, request, context)

        return wrap_handler(handler, around)

    @abc.abstractmethod
    def around(
        self,
        method: str,
        metadata: dict[str, Any],
        behaviour: Behaviour,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        """Run `behaviour(request, context)` with this interceptor's job around it."""


class RequestIdInterceptor(Interceptor):
    """Adopt `x-request-id` (or the baggage's, or a new one) and echo it in trailing metadata."""

    def around(
        self,
        method: str,
        metadata: dict[str, Any],
        behaviour: Behaviour,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        incoming = metadata.get(REQUEST_ID_HEADER) or current_request_id() or ""
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()
        trace.get_current_span().set_attribute(REQUEST_ID_KEY, request_id)
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        with request_context(request_id):
            return behaviour(request, context)


class ErrorMappingInterceptor(Interceptor):
    """Turn service errors into status codes (with field violations); hide unexpected ones."""

    def around(
        self,
        method: str,
        metadata: dict[str, Any],
        behaviour: Behaviour,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        try:
            return behaviour(request, context)
        except errors.ServiceError as error:
            _abort(context, error)
        except Exception as error:
            if status_code(context) is not None:  # already aborted by the handler itself
                raise
            if database_unavailable(error):
                # The database is down or dropped the connection: a retry may well succeed.
                log.warning("database unavailable in %s: %s", method, error, exc_info=True)
                message = f"database unavailable; retry (request id {current_request_id()})"
                _abort_with(context, code_pb2.UNAVAILABLE, message, [])
            log.exception("unhandled error in %s", method)
            message = f"internal error (request id {current_request_id()})"
            _abort_with(context, code_pb2.INTERNAL, message, [])
        return None  # pragma: no cover - abort always raises


def _abort(context: grpc.ServicerContext, error: errors.ServiceError) -> None:
    _, code = next(codes for kind, codes in _CODES.items() if isinstance(error, kind))
    details: list[any_pb2.Any] = []
    if isinstance(error, errors.InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        details.append(detail)
        summary = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
        message = f"{error.message}: {summary}" if summary else error.message
    else:
        message = error.message
    _abort_with(context, code, message, details)


def _abort_with(
    context: grpc.ServicerContext, code: int, message: str, details: list[any_pb2.Any]
) -> None:
    status = rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))
    request_id = current_request_id()
    trailing = tuple(status.trailing_metadata)
    if request_id:
        trailing += ((REQUEST_ID_HEADER, request_id),)
    context.set_trailing_metadata(trailing)
    context.abort(status.code, status.details)


class AccessLogInterceptor(Interceptor):
    """One log line per call (method, status code, duration and peer) and its `rpc.server.duration`.

    Outside the error mapping, so both see the code the caller gets. One interceptor for both:
    the call is timed once.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or process_metrics()

    def around(
        self,
        method: str,
        metadata: dict[str, Any],
        behaviour: Behaviour,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return behaviour(request, context)
        except BaseException:
            code = status_code(context) or grpc.StatusCode.UNKNOWN
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            self.metrics.rpc_server(method, code, duration_ms)
            log.info(
                "%s %s",
                method,
                code.name,
                extra={
                    "grpc_method": method,
                    "grpc_code": code.name,
                    "duration_ms": round(duration_ms, 3),
                    "peer": context.peer(),
                },
            )


class DeadlineInterceptor(Interceptor):
    """Refuse to start work whose deadline has already passed (the caller gave up)."""

    def around(
        self,
        method: str,
        metadata: dict[str, Any],
        behaviour: Behaviour,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        if context.time_remaining() <= 0:
            raise errors.DeadlineExceeded(f"deadline passed before {method} started")
        return behaviour(request, context)
