"""The dashboard's FastAPI application: pages, a JSON API, and the OTLP/HTTP receivers.

`create_app(settings)` builds everything; importing this module creates nothing. Pages are
rendered on the server (Jinja templates); the little JavaScript there is (span details, the
confirmation dialogs' focus, auto-refresh) and every style are served from `static/`: no CDN.

Nothing changes on a GET. The only actions — redriving and purging a DLQ — are POSTs that
need the confirmation field their confirmation page sets and the token of this instance (a
page of another site cannot post them), and every request must name a loopback host, so
another site cannot read the pages through a DNS name it points at 127.0.0.1.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from eventforge.cli.queues import format_age
from eventforge.dashboard.metrics import MetricStore
from eventforge.dashboard.saga import saga_view
from eventforge.dashboard.sources import Sources
from eventforge.dashboard.spans import SpanStore, short_service
from eventforge.dashboard.views import (
    SERVICE_COLOURS,
    TraceView,
    format_ms,
    request_waterfall,
    service_colour,
    service_map,
    span_details,
    sparkline,
    trace_waterfall,
)
from eventforge.runtime.settings import Settings, is_loopback_host, split_address

if TYPE_CHECKING:
    from eventforge.dashboard.otlp import OtlpError

HERE = Path(__file__).parent
# What the pages need besides FastAPI (boto3, gRPC, SQLAlchemy, the OpenTelemetry SDK and
# protos) is imported when a page first needs it: an unvisited dashboard stays small.


def aws_errors() -> tuple[type[Exception], ...]:
    """The failures of an SQS call the pages show instead of failing."""
    from botocore.exceptions import BotoCoreError, ClientError

    from eventforge.runtime.messaging.dlq import QueueMissingError

    return (ClientError, BotoCoreError, QueueMissingError)


def create_app(
    settings: Settings,
    *,
    sources: Sources | None = None,
    spans: SpanStore | None = None,
    metrics: MetricStore | None = None,
) -> FastAPI:
    """The dashboard of the stack `settings` describe.

    `spans` defaults to the stack's span file (when SPAN_FILE_ENABLED) plus what arrives on
    `/v1/traces`; `sources` to clients of the stack's services, queues and databases.
    """
    sources = sources or Sources(settings)
    spans = spans or SpanStore(settings.spans_path if settings.span_file_enabled else None)
    metrics = metrics or MetricStore()
    token = secrets.token_urlsafe(24)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        sources.close()

    app = FastAPI(
        title="EventForge dashboard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sources = sources
    app.state.spans = spans
    app.state.metrics = metrics
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        settings=settings,
        token=token,
        colour=service_colour,
        colours=SERVICE_COLOURS,
        short=short_service,
        ms=format_ms,
        age=format_age,
        when=_when,
        ago=_ago,
        sparkline=sparkline,
    )
    if not settings.dashboard_allow_remote:
        _guard_host(app)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"nav": name.split(".")[0], **context}, status_code=status_code
        )

    # --- pages ---------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        queues, queue_error = _queues(sources)
        return page(
            request,
            "overview.html",
            health=sources.health(),
            queues=queues,
            queue_error=queue_error,
            outboxes=sources.outbox_backlogs(),
            requests=spans.index().recent_requests(10),
        )

    @app.get("/requests", response_class=HTMLResponse)
    def requests_page(request: Request, q: str = "", all: bool = False) -> HTMLResponse:
        index = spans.index()
        return page(
            request,
            "requests.html",
            requests=index.recent_requests(200, query=q, include_noise=all),
            query=q,
            include_noise=all,
            total_spans=len(index),
            span_file=spans.path,
        )

    def waterfall_page(
        request: Request, views: list[TraceView], title: str, request_id: str | None
    ) -> HTMLResponse:
        """The waterfall of the spans found; 404 when there are none."""
        return page(
            request,
            "waterfall.html",
            status_code=200 if views else 404,
            title=title,
            request_id=request_id,
            views=views,
            details=span_details(views),
        )

    @app.get("/requests/{request_id:path}", response_class=HTMLResponse)
    def request_page(request: Request, request_id: str) -> HTMLResponse:
        records = spans.index().request_records(request_id)
        views = request_waterfall(records, request_id) if records else []
        return waterfall_page(request, views, f"request {request_id}", request_id)

    @app.get("/traces/{trace_id}", response_class=HTMLResponse)
    def trace_page(request: Request, trace_id: str) -> HTMLResponse:
        records = spans.index().trace_records(trace_id)
        views = trace_waterfall(records) if records else []
        return waterfall_page(request, views, f"trace {trace_id}", None)

    @app.get("/map", response_class=HTMLResponse)
    def map_page(request: Request) -> HTMLResponse:
        return page(request, "map.html", map=service_map(spans.index().observed_edges()))

    @app.get("/queues", response_class=HTMLResponse)
    def queues_page(request: Request) -> HTMLResponse:
        queues, queue_error = _queues(sources)
        return page(
            request,
            "queues.html",
            queues=queues,
            queue_error=queue_error,
            outboxes=sources.outbox_backlogs(),
        )

    @app.get("/queues/{queue}/dlq", response_class=HTMLResponse)
    def dlq_page(request: Request, queue: str) -> HTMLResponse:
        resolved = _resolve(sources, queue)
        try:
            letters, error = sources.dead_letters(resolved), ""
        except aws_errors() as failure:
            letters, error = [], str(failure)
        return page(
            request,
            "dlq.html",
            queue=resolved,
            letters=letters,
            error=error,
            result=dict(request.query_params),
        )

    @app.get("/queues/{queue}/dlq/redrive", response_class=HTMLResponse)
    def redrive_confirm(
        request: Request, queue: str, id: str | None = None, all: bool = False
    ) -> HTMLResponse:
        resolved = _resolve(sources, queue)
        ids = request.query_params.getlist("id")
        if not ids and not all:
            raise HTTPException(400, "choose messages (id=…) or all=true")
        return page(request, "confirm.html", action="redrive", queue=resolved, ids=ids, error="")

    @app.post("/queues/{queue}/dlq/redrive", response_class=HTMLResponse)
    async def redrive(request: Request, queue: str) -> Response:
        resolved = _resolve(sources, queue)
        form = await _form(request)
        ids = form.get("id", [])
        if not _confirmed(form, token, resolved.spec.name):
            return page(
                request,
                "confirm.html",
                status_code=400,
                action="redrive",
                queue=resolved,
                ids=ids,
                error="Not redriven: the redrive was not confirmed.",
            )
        if not ids and _one(form, "all") != "true":
            raise HTTPException(400, "choose messages (id=…) or all=true")
        try:
            result = sources.redrive(resolved, ids or None)
        except aws_errors() as error:
            raise HTTPException(502, f"redrive failed: {error}") from None
        outcome = {
            "redriven": len(result.redriven),
            "failed": len(result.failed),
            "not_found": len(result.not_found),
            "duplicated": len(result.duplicated),
        }
        return _after_post(resolved.spec.name, outcome)

    @app.get("/queues/{queue}/dlq/purge", response_class=HTMLResponse)
    def purge_confirm(request: Request, queue: str) -> HTMLResponse:
        resolved = _resolve(sources, queue)
        try:
            depth: int | None = sources.dlq_depth(resolved)
        except aws_errors():
            depth = None
        return page(
            request, "confirm.html", action="purge", queue=resolved, ids=[], depth=depth, error=""
        )

    @app.post("/queues/{queue}/dlq/purge", response_class=HTMLResponse)
    async def purge(request: Request, queue: str) -> Response:
        resolved = _resolve(sources, queue)
        form = await _form(request)
        if not _confirmed(form, token, resolved.spec.name):
            return page(
                request,
                "confirm.html",
                status_code=400,
                action="purge",
                queue=resolved,
                ids=[],
                depth=None,
                error=f"Not purged: type the queue's name, {resolved.spec.name}, to confirm.",
            )
        try:
            result = sources.purge(resolved)
        except aws_errors() as error:
            raise HTTPException(502, f"purge failed: {error}") from None
        return _after_post(resolved.spec.name, {"purged": result.count, "method": result.method})

    @app.get("/orders", response_class=HTMLResponse)
    def orders_page(request: Request, order_id: str = "") -> Response:
        if order_id.strip():
            return RedirectResponse(f"/orders/{order_id.strip()}", status_code=303)
        return page(request, "orders.html", orders=spans.index().recent_orders())

    @app.get("/orders/{order_id}", response_class=HTMLResponse)
    def order_page(request: Request, order_id: str) -> HTMLResponse:
        return page(request, "saga.html", saga=saga_view(order_id, spans.index(), sources))

    @app.get("/metrics", response_class=HTMLResponse)
    def metrics_page(request: Request) -> HTMLResponse:
        return page(request, "metrics.html", groups=metrics.groups(), metrics=metrics)

    # --- JSON ----------------------------------------------------------------------------------

    @app.get("/api/health")
    def api_health() -> list[dict[str, Any]]:
        return [
            {
                "service": h.service,
                "address": h.address,
                "status": h.status,
                "latency_ms": h.latency_ms,
                "detail": h.detail,
            }
            for h in sources.health()
        ]

    @app.get("/api/queues")
    def api_queues() -> dict[str, Any]:
        queues, error = _queues(sources)
        return {"queues": [q.as_dict() for q in queues], "error": error or None}

    @app.get("/api/queues/{queue}/dlq")
    def api_dlq(queue: str) -> list[dict[str, Any]]:
        resolved = _resolve(sources, queue)
        try:
            return [letter.as_dict() for letter in sources.dead_letters(resolved)]
        except aws_errors() as error:
            raise HTTPException(502, str(error)) from None

    @app.get("/api/outbox")
    def api_outbox() -> list[dict[str, Any]]:
        return [
            {
                "service": b.service,
                "unpublished": b.unpublished,
                "oldest_age_seconds": b.oldest_age_seconds,
                "failing": b.failing,
                "error": b.error or None,
            }
            for b in sources.outbox_backlogs()
        ]

    @app.get("/api/requests")
    def api_requests(q: str = "", limit: int = 200) -> list[dict[str, Any]]:
        return [
            {
                "request_id": s.request_id,
                "start_unix_nano": s.start_unix_nano,
                "duration_ms": s.duration_ms,
                "spans": s.spans,
                "services": list(s.services),
                "root": s.root,
                "errors": s.errors,
                "trace_ids": list(s.trace_ids),
            }
            for s in spans.index().recent_requests(max(1, min(limit, 1000)), query=q)
        ]

    @app.get("/api/requests/{request_id:path}")
    def api_request(request_id: str) -> dict[str, Any]:
        records = spans.index().request_records(request_id)
        if not records:
            raise HTTPException(404, f"no span with request id {request_id!r}")
        return {"request_id": request_id, "spans": records}

    @app.get("/api/traces/{trace_id}")
    def api_trace(trace_id: str) -> dict[str, Any]:
        records = spans.index().trace_records(trace_id)
        if not records:
            raise HTTPException(404, f"no span of trace {trace_id!r}")
        return {"trace_id": trace_id, "spans": records}

    @app.get("/api/map")
    def api_map() -> list[dict[str, Any]]:
        return [
            {
                "source": row.edge.source,
                "target": row.edge.target,
                "kind": row.edge.kind,
                "via": row.edge.via,
                "declared": row.declared,
                "observed": row.observed,
            }
            for row in service_map(spans.index().observed_edges()).rows
        ]

    @app.get("/api/orders/{order_id}")
    def api_order(order_id: str) -> dict[str, Any]:
        view = saga_view(order_id, spans.index(), sources)
        return {
            "order_id": view.order_id,
            "status": view.status or None,
            "error": view.error or None,
            "timeline": [
                {
                    "time_unix_nano": e.time_unix_nano,
                    "kind": e.kind,
                    "title": e.title,
                    "service": e.service,
                    "detail": e.detail,
                    "error": e.error,
                    "trace_id": e.trace_id,
                    "span_id": e.span_id,
                }
                for e in view.entries
            ],
            "emails": [vars(e) for e in view.emails],
            "deliveries": [vars(d) for d in view.deliveries],
        }

    @app.get("/api/metrics")
    def api_metrics() -> list[dict[str, Any]]:
        return [
            {
                "name": group.name,
                "unit": group.unit,
                "kind": group.kind,
                "series": [
                    {
                        "service": s.service,
                        "attributes": dict(s.attributes),
                        "points": [list(p) for p in s.points],
                    }
                    for s in group.series
                ],
            }
            for group in metrics.groups()
        ]

    # --- OTLP/HTTP -----------------------------------------------------------------------------

    @app.post("/v1/traces")
    async def otlp_traces(request: Request) -> Response:
        from eventforge.dashboard import otlp

        kind, body = await _otlp_body(request)
        try:
            spans.add(otlp.decode_traces(body, kind))
        except otlp.OtlpError as error:
            return _otlp_error(error)
        content, media_type = otlp.traces_response(kind)
        return Response(content, media_type=media_type)

    @app.post("/v1/metrics")
    async def otlp_metrics(request: Request) -> Response:
        from eventforge.dashboard import otlp

        kind, body = await _otlp_body(request)
        try:
            metrics.add(otlp.decode_metrics(body, kind))
        except otlp.OtlpError as error:
            return _otlp_error(error)
        content, media_type = otlp.metrics_response(kind)
        return Response(content, media_type=media_type)

    return app


# --- helpers -----------------------------------------------------------------------------------


def _guard_host(app: FastAPI) -> None:
    """Refuse requests whose Host is not loopback, and cross-origin POSTs."""

    @app.middleware("http")
    async def loopback_only(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = _hostname(request.headers.get("host", ""))
        if host is None or not is_loopback_host(host):
            return Response("this dashboard answers loopback host names only", 421)
        origin = request.headers.get("origin")
        if request.method == "POST" and origin and origin != "null":
            origin_host = urlsplit(origin).hostname
            if origin_host is None or not is_loopback_host(origin_host):
                return Response("cross-origin requests are refused", 403)
        return await call_next(request)


def _hostname(host: str) -> str | None:
    if not host:
        return None
    try:
        return split_address(host)[0] if host.rsplit(":", 1)[-1].isdigit() else host.strip("[]")
    except ValueError:
        return None


def _queues(sources: Sources) -> tuple[list[Any], str]:
    try:
        return sources.queue_stats(), ""
    except aws_errors() as error:
        return [], str(error)


def _resolve(sources: Sources, queue: str) -> Any:
    from eventforge.runtime.messaging.dlq import UnknownQueueError

    try:
        return sources.queue(queue)
    except UnknownQueueError as error:
        raise HTTPException(404, str(error)) from None


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (the only kind the dashboard's forms send)."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0].strip()


def _confirmed(form: dict[str, list[str]], token: str, queue: str) -> bool:
    """The form carries this dashboard's token and names the queue in `confirm`."""
    return hmac.compare_digest(_one(form, "token"), token) and _one(form, "confirm") == queue


def _after_post(queue: str, outcome: dict[str, Any]) -> RedirectResponse:
    """Back to the DLQ page (303: the browser GETs it), which shows what was done."""
    return RedirectResponse(f"/queues/{queue}/dlq?{urlencode(outcome)}", status_code=303)


async def _otlp_body(request: Request) -> tuple[str, bytes]:
    from eventforge.dashboard import otlp

    try:
        kind = otlp.media_type(request.headers.get("content-type"))
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > otlp.MAX_BODY_BYTES:
            raise otlp.OtlpError(f"body larger than {otlp.MAX_BODY_BYTES} bytes", 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > otlp.MAX_BODY_BYTES:
                raise otlp.OtlpError(f"body larger than {otlp.MAX_BODY_BYTES} bytes", 413)
        return kind, otlp.decompress(bytes(body), request.headers.get("content-encoding"))
    except otlp.OtlpError as error:
        raise HTTPException(error.status, str(error)) from None


def _otlp_error(error: OtlpError) -> Response:
    return JSONResponse({"code": 3, "message": str(error)}, status_code=error.status)


def _when(unix_nano: int) -> str:
    moment = datetime.fromtimestamp(unix_nano / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ago(unix_nano: int) -> str:
    seconds = max(0.0, datetime.now(UTC).timestamp() - unix_nano / 1e9)
    return format_age(seconds) + " ago"
