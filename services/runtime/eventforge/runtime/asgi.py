"""What every HTTP request to an EventForge ASGI app gets around it, in one middleware.

Per request: the request id (the caller's `x-request-id` if plausible, else a new one) in
baggage and on the response, one SERVER span following the HTTP semantic conventions, and one
access-log line in the request's context (so it carries the trace and request ids).

The span begins a new trace: an app facing the internet (webhooks from providers) must not let
a caller choose the trace its work joins or the baggage it carries. A `traceparent` the caller
sent is kept as a link, so a cooperating sender can still find the request.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.context import Context

from eventforge.runtime.context import REQUEST_ID_HEADER, REQUEST_ID_KEY, request_id_or_new
from eventforge.runtime.settings import split_address

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("eventforge.http")


class RequestTelemetry:
    """ASGI middleware: request id, SERVER span and access log of each HTTP request."""

    def __init__(
        self, app: ASGIApp, *, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self.app = app
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        request_id = request_id_or_new(headers.get(REQUEST_ID_HEADER))
        method = str(scope.get("method", "GET"))
        current = baggage.set_baggage(REQUEST_ID_KEY, request_id, Context())
        sender = trace.get_current_span(propagate.extract(headers)).get_span_context()
        span = self.tracer.start_span(
            method,
            current,
            trace.SpanKind.SERVER,
            _request_attributes(scope, headers, request_id),
            links=[trace.Link(sender)] if sender.is_valid else None,
        )
        token = context.attach(trace.set_span_in_context(span, current))
        status = 500  # what the server answers when the app fails before it does

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", ()),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as error:
            span.record_exception(error)
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            self._finish(span, method, route, status, scope, started)
            context.detach(token)

    def _finish(
        self,
        span: trace.Span,
        method: str,
        route: str | None,
        status: int,
        scope: Scope,
        started: float,
    ) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        if route is not None:
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR, str(status))
        span.end()
        log.info(
            "%s %s %d",
            method,
            scope.get("path", ""),
            status,
            extra={
                "http_method": method,
                "http_route": route,
                "http_status": status,
                "duration_ms": round(duration_ms, 3),
                "client": _client(scope),
            },
        )


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _request_attributes(
    scope: Scope, headers: dict[str, str], request_id: str
) -> dict[str, str | int]:
    """The HTTP server span's attributes known before the app runs, and the request id."""
    attributes: dict[str, str | int] = {
        "http.request.method": str(scope.get("method", "GET")),
        "url.path": str(scope.get("path", "")),
        "url.scheme": str(scope.get("scheme", "http")),
        "network.protocol.version": str(scope.get("http_version", "1.1")),
        REQUEST_ID_KEY: request_id,
    }
    server = scope.get("server")
    if server:
        attributes["server.address"] = str(server[0])
        if server[1] is not None:
            attributes["server.port"] = int(server[1])
    client = _client(scope)
    if client:
        attributes["client.address"] = client
    if "user-agent" in headers:
        attributes["user_agent.original"] = headers["user-agent"][:256]
    return attributes


def listening_socket(address: str) -> socket.socket:
    """A TCP socket bound to `host:port` with SO_REUSEPORT: several processes can serve one port
    (API_PROCESSES), the kernel spreading connections over them, as the gRPC servers do."""
    host, port = split_address(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_asgi(app: ASGIApp, address: str, stop: threading.Event, *, grace: float) -> None:
    """Serve `app` over HTTP/1.1 on `address` with uvicorn (on uvloop) until `stop` is set, then
    finish the requests in flight for up to `grace` seconds. Logging stays the process's own
    (JSON lines; `RequestTelemetry` writes the access log)."""
    import uvicorn  # only HTTP servers need it

    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="h11",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=max(1, round(grace)),
    )
    server = uvicorn.Server(config)

    def stop_when_told() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=stop_when_told, name="http-stop", daemon=True).start()
    server.run(sockets=[listening_socket(address)])
    log.info("stopped")
