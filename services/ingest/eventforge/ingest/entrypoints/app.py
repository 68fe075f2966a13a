"""The ingest HTTP API: `POST /webhooks/{source}` and `GET /healthz`, on Starlette.

Thin: reads the request within its limits and hands it to `receive`; every refusal is a 4xx
problem, a database outage a 503 with Retry-After (providers retry), and only a bug a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from http import HTTPStatus

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventforge.ingest.bootstrap import IngestApp
from eventforge.ingest.domain.refusals import BodyTooLarge, Refused, UnsupportedMediaType
from eventforge.ingest.entrypoints.problems import problem, refusal
from eventforge.ingest.service_layer.receive import Inbound, Receipt, receive
from eventforge.runtime.asgi import RequestTelemetry
from eventforge.runtime.context import current_request_id
from eventforge.runtime.db import database_unavailable
from eventforge.runtime.grpc.health_http import HEALTH_PATH

log = logging.getLogger("eventforge.ingest")

WEBHOOK_ROUTE = "/webhooks/{source}"
HEALTH_ROUTE = HEALTH_PATH
JSON_MEDIA_TYPE = "application/json"
RETRY_AFTER_SECONDS = 5
HEALTH_TIMEOUT_SECONDS = 2.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge as soon as it passes `limit` (never more kept than limit+1)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk[: limit + 1 - len(body)]
        if len(body) > limit:
            raise BodyTooLarge(f"body over the limit of {limit} bytes")
    return bytes(body)


def check_media_type(content_type: str) -> None:
    """UnsupportedMediaType unless the body is declared JSON (any parameters, e.g. charset)."""
    if content_type.split(";", 1)[0].strip().lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type {content_type[:64]!r}; webhooks are {JSON_MEDIA_TYPE}"
        )


def accepted(receipt: Receipt) -> JSONResponse:
    """202 for an event recorded now; 200 for a duplicate or an ignored type."""
    return JSONResponse(
        {
            "outcome": receipt.outcome,
            "source": receipt.source,
            "provider_event_id": receipt.provider_event_id,
            "provider_event_type": receipt.provider_event_type,
            "event_type": receipt.event_type,
            "request_id": current_request_id(),
        },
        status_code=202 if receipt.outcome == "recorded" else 200,
    )


def create_app(
    ingest: IngestApp,
    inbound: Inbound,
    *,
    clock: Callable[[], datetime] = _utcnow,
    tracer_provider: trace.TracerProvider | None = None,
) -> RequestTelemetry:
    """The API on `ingest`'s database for `inbound`'s sources, with request telemetry."""
    limit = ingest.settings.ingest_max_body_bytes

    async def webhook(request: Request) -> Response:
        span = trace.get_current_span()
        source_name = str(request.path_params["source"])
        span.set_attribute("eventforge.webhook.source", source_name[:64])
        try:
            inbound.source(source_name)  # an unknown source is refused before reading more
            check_media_type(request.headers.get("content-type", ""))
            receipt = await receive(
                inbound=inbound,
                source_name=source_name,
                headers=request.headers,
                body=await read_body(request, limit),
                uow=ingest.async_uow(),
                now=clock(),
            )
        except Refused as error:
            span.set_attribute("error.type", error.slug)
            log.info("refused: %s (%s)", error.slug, error.detail)
            return refusal(error)
        except Exception as error:
            span.record_exception(error)
            if database_unavailable(error):
                log.warning("database unavailable: %s", error)
                return problem(
                    "database-unavailable",
                    503,
                    "Database unavailable",
                    f"nothing was recorded; retry in {RETRY_AFTER_SECONDS} s",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            log.exception("webhook from %s failed", source_name[:64])
            return problem("internal-error", 500, "Internal error", "nothing was recorded")
        span.set_attribute("eventforge.webhook.provider_event_id", receipt.provider_event_id)
        span.set_attribute("eventforge.webhook.outcome", receipt.outcome)
        return accepted(receipt)

    async def health(request: Request) -> Response:
        serving = await _database_answers(ingest)
        return JSONResponse(
            {"status": "SERVING" if serving else "NOT_SERVING"}, status_code=200 if serving else 503
        )

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        phrase = HTTPStatus(error.status_code).phrase
        return problem(
            phrase.lower().replace(" ", "-"),
            error.status_code,
            phrase,
            f"{request.method} {request.url.path[:100]}: {error.detail}",
            error.headers,
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await ingest.async_engine.dispose()

    app = Starlette(
        routes=[
            Route(WEBHOOK_ROUTE, webhook, methods=["POST"]),
            Route(HEALTH_ROUTE, health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    return RequestTelemetry(app, tracer_provider=tracer_provider)


async def _database_answers(ingest: IngestApp) -> bool:
    """Whether the database answers a trivial query within the health timeout (untraced)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            with suppress_instrumentation():
                async with ingest.async_engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
    except Exception:  # any failure is NOT_SERVING; the probe itself must not fail
        return False
    return True
