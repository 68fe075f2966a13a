"""The edges a trace may show: service → service, synchronous (gRPC) and asynchronous (events),
and the notifier's calls out of the system (SES, webhook endpoints).

One declared list that on-call engineers can read and that a test holds the real exported
traces against: a new call or subscription must be declared here, or that test fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eventforge.topology import TOPOLOGY

EdgeKind = Literal["grpc", "async", "external"]
SERVICE_PREFIX = "eventforge-"
SES = "ses"
WEBHOOK_ENDPOINT = "webhook endpoint"
"""External targets: they have no spans of their own, so the calling span names the edge."""
SCHEDULER = "scheduler"
"""The service name of the local scheduler's spans and logs (and of `eventforge jobs run`'s)."""


@dataclass(frozen=True, order=True)
class Edge:
    """`source` calls `target` (gRPC method `Service/Method`), `target` consumes an event, or
    `source` calls out of the system (`via` the API operation or HTTP method)."""

    source: str
    target: str
    kind: EdgeKind
    via: str


_ORDER_OUTCOMES = (
    "order.confirmed",
    "order.failed",
    "order.cancelled",
    "order.compensation_failed",
)

EDGES: frozenset[Edge] = frozenset(
    {
        # The orders worker runs the saga from the orders API's own event.
        Edge("orders", "orders", "async", "order.placed"),
        Edge("orders", "files", "async", "order.confirmed"),
        *(Edge("orders", "notifier", "async", event) for event in _ORDER_OUTCOMES),
        Edge("files", "notifier", "async", "receipt.ready"),
        Edge("files", "notifier", "async", "file.processed"),
        Edge("files", "notifier", "async", "file.rejected"),
        Edge("ingest", "orders", "async", "payment.succeeded"),
        Edge("ingest", "orders", "async", "payment.failed"),
        # A job's tick sent by hand (`eventforge jobs run`) continues the trace of its send;
        # a scheduled tick carries no trace context and starts its own.
        *(Edge(SCHEDULER, job.target, "async", job.handler_key) for job in TOPOLOGY.jobs),
        # Receipts are rendered from the order; links point at files' download URLs.
        Edge("files", "orders", "grpc", "OrdersService/GetOrder"),
        Edge("orders", "files", "grpc", "FilesService/GetDownloadUrl"),
        Edge("notifier", "files", "grpc", "FilesService/GetDownloadUrl"),
        # The effects on the outside world: the emails and the webhook deliveries.
        Edge("notifier", SES, "external", "SES/SendEmail"),
        Edge("notifier", WEBHOOK_ENDPOINT, "external", "POST"),
    }
)


def _service(record: Mapping[str, Any]) -> str:
    return str(record["service"]).removeprefix(SERVICE_PREFIX)


def _edge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> Edge | None:
    attributes = child.get("attributes", {})
    if parent["kind"] == "CLIENT" and child["kind"] == "SERVER":
        method = f"{str(attributes.get('rpc.service', '')).rsplit('.', 1)[-1]}/"
        method += str(attributes.get("rpc.method", ""))
        return Edge(_service(parent), _service(child), "grpc", method)
    if parent["kind"] == "PRODUCER" and child["kind"] == "CONSUMER":
        event_type = str(attributes.get("eventforge.event_type", ""))
        return Edge(_service(parent), _service(child), "async", event_type)
    return None


def _external_edge(record: Mapping[str, Any]) -> Edge | None:
    if record["kind"] != "CLIENT":
        return None
    attributes = record.get("attributes", {})
    if attributes.get("rpc.system") == "aws-api" and attributes.get("rpc.service") == "SES":
        return Edge(_service(record), SES, "external", f"SES/{attributes.get('rpc.method', '')}")
    if "eventforge.webhook_id" in attributes:
        method = str(attributes.get("http.request.method", ""))
        return Edge(_service(record), WEBHOOK_ENDPOINT, "external", method)
    return None


def observed_edges(records: Iterable[Mapping[str, Any]]) -> set[Edge]:
    """The edges that span-file records show: parent → child across a hop between services,
    and client spans that leave the system (SES calls, webhook POSTs)."""
    records = list(records)
    by_id = {(r["trace_id"], r["span_id"]): r for r in records}
    found = set()
    for record in records:
        parent = by_id.get((record["trace_id"], record["parent_span_id"]))
        if parent is not None and (edge := _edge(parent, record)) is not None:
            found.add(edge)
        if (edge := _external_edge(record)) is not None:
            found.add(edge)
    return found
