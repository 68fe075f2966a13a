"""What the pages draw, computed from the data: waterfalls, the service map, sparklines.

Pure functions over span-file records and metric series; the templates only place what these
return (positions in per cent or SVG coordinates, colours, labels).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any

from eventforge.dashboard.spans import short_service
from eventforge.trace_edges import EDGES, Edge

if TYPE_CHECKING:
    from eventforge.runtime.telemetry import SpanRecord
    from eventforge.runtime.waterfall import Row

SERVICE_COLOURS = {"orders": "#2563eb", "files": "#059669", "notifier": "#d97706"}
_PALETTE = ("#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9333ea", "#e11d48", "#0d9488")
_TRACE_MARK = "\x00trace"


def service_colour(service: str) -> str:
    """One colour per service: fixed for EventForge's, stable (by name) for any other."""
    if service in SERVICE_COLOURS:
        return SERVICE_COLOURS[service]
    digest = hashlib.sha256(service.encode()).digest()
    return _PALETTE[digest[0] % len(_PALETTE)]


def format_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.2f} ms"


# --- waterfall ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaterfallSpan:
    """One row of a waterfall, placed on the trace's time axis."""

    row: Row
    record: SpanRecord
    service: str
    colour: str
    left: float
    """Start, in per cent of the trace's duration."""
    width: float
    hop_from: str
    """For an async hop: where it came from (`orders · orders-events publish`), else ``."""

    @property
    def database(self) -> bool:
        """A database statement or connection (the page can hide those)."""
        return "db.system" in self.record["attributes"] or "sqlalchemy" in str(
            self.record.get("scope") or ""
        )


@dataclass(frozen=True)
class TraceView:
    """The waterfall of one trace."""

    trace_id: str
    duration_ms: float
    start_unix_nano: int
    spans: list[WaterfallSpan]
    services: list[tuple[str, str]]
    """(service, colour) of every service in the trace, in order of appearance."""
    errors: int
    ticks: list[tuple[float, str]]
    """(per cent, label) of the time axis."""


def request_waterfall(records: Sequence[SpanRecord], request_id: str) -> list[TraceView]:
    """The waterfalls of every trace carrying `request_id`, earliest first."""
    from eventforge.runtime.waterfall import build_waterfall  # with the SDK: not at start-up

    return _views(build_waterfall(records, request_id), records)


def trace_waterfall(records: Sequence[SpanRecord]) -> list[TraceView]:
    """The waterfall of the spans of one trace (whatever their request ids)."""
    from eventforge.runtime.waterfall import build_waterfall

    # build_waterfall selects traces by request id: give every span of this one the same mark.
    marked: list[SpanRecord] = [{**r, "request_id": _TRACE_MARK} for r in records]
    original = {(r["trace_id"], r["span_id"]): r for r in records}
    return _views(build_waterfall(marked, _TRACE_MARK), list(original.values()))


def _views(rows: list[Row], records: Sequence[SpanRecord]) -> list[TraceView]:
    by_id = {(r["trace_id"], r["span_id"]): r for r in records}
    views: list[TraceView] = []
    for trace_id, group in groupby(rows, key=lambda row: row.trace_id):
        trace_rows = list(group)
        in_trace = {row.span_id: by_id[(trace_id, row.span_id)] for row in trace_rows}
        total = trace_rows[0].trace_duration_ms
        spans: list[WaterfallSpan] = []
        services: dict[str, str] = {}
        for row in trace_rows:
            record = in_trace[row.span_id]
            service = short_service(record.get("service"))
            colour = services.setdefault(service, service_colour(service))
            left = row.offset_ms / total * 100 if total > 0 else 0.0
            width = row.duration_ms / total * 100 if total > 0 else 100.0
            spans.append(
                WaterfallSpan(
                    row=row,
                    record=record,
                    service=service,
                    colour=colour,
                    left=min(left, 99.7),
                    width=max(0.3, min(width, 100.0 - min(left, 99.7))),
                    hop_from=_hop_from(record, in_trace) if row.async_hop else "",
                )
            )
        views.append(
            TraceView(
                trace_id=trace_id,
                duration_ms=total,
                start_unix_nano=min(r["start_unix_nano"] for r in in_trace.values()),
                spans=spans,
                services=list(services.items()),
                errors=sum(s.row.error for s in spans),
                ticks=_ticks(total),
            )
        )
    return views


def _hop_from(record: SpanRecord, in_trace: dict[str, SpanRecord]) -> str:
    parent = in_trace.get(record.get("parent_span_id") or "")
    if record["kind"] == "CONSUMER" and parent is not None:
        return f"{short_service(parent.get('service'))} · {parent['name']}"
    if record["kind"] == "PRODUCER":
        destination = record["attributes"].get("messaging.destination.name", "")
        return f"publishes to {str(destination).rsplit(':', 1)[-1] or 'a topic'}"
    for link in record.get("links") or ():
        target = in_trace.get(link["span_id"])
        if target is not None:
            return f"linked to {short_service(target.get('service'))} · {target['name']}"
        return f"linked to trace {link['trace_id'][:8]}…"
    if parent is not None:
        return f"{short_service(parent.get('service'))} · {parent['name']}"
    return "async"


def _ticks(total_ms: float) -> list[tuple[float, str]]:
    if total_ms <= 0:
        return [(0.0, "0 ms")]
    return [(0.0, "0 ms")] + [(p, format_ms(total_ms * p / 100)) for p in (25.0, 50.0, 75.0, 100.0)]


def span_details(views: Iterable[TraceView]) -> dict[str, dict[str, Any]]:
    """What a click on a span shows, by span id: attributes, events, links, status."""
    details: dict[str, dict[str, Any]] = {}
    for view in views:
        for span in view.spans:
            record, row = span.record, span.row
            start = record["start_unix_nano"]
            details[row.span_id] = {
                "name": record["name"],
                "service": span.service,
                "colour": span.colour,
                "kind": record["kind"],
                "trace_id": record["trace_id"],
                "span_id": record["span_id"],
                "parent_span_id": record.get("parent_span_id"),
                "scope": record.get("scope"),
                "offset": format_ms(row.offset_ms),
                "duration": format_ms(row.duration_ms),
                "status": record["status"]["code"],
                "status_description": record["status"].get("description"),
                "request_id": record.get("request_id"),
                "async_hop": span.hop_from,
                "attributes": sorted(
                    (key, _display(value)) for key, value in record["attributes"].items()
                ),
                "events": [
                    {
                        "name": event["name"],
                        "offset": format_ms((event["time_unix_nano"] - start) / 1e6),
                        "attributes": sorted(
                            (key, _display(value)) for key, value in event["attributes"].items()
                        ),
                    }
                    for event in record.get("events") or ()
                ],
                "links": [
                    {"trace_id": link["trace_id"], "span_id": link["span_id"], "text": text}
                    for link, text in zip(record.get("links") or (), row.links, strict=False)
                ],
            }
    return details


def _display(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_display(item) for item in value) + "]"
    return str(value)


# --- service map -------------------------------------------------------------------------------

MAP_WIDTH, MAP_HEIGHT = 900, 480
_NODE_H = 44
_FIXED = {"orders": (420.0, 80.0), "files": (250.0, 380.0), "notifier": (590.0, 380.0)}
_OUTSIDE_X, _CALLERS_X = 810.0, 80.0
_LABEL_AT = (0.5, 0.3, 0.7, 0.4, 0.6)


@dataclass(frozen=True)
class MapNode:
    name: str
    x: float
    y: float
    width: float
    colour: str
    external: bool
    """Not one of EventForge's services: a system it calls, or a caller of its own."""


@dataclass(frozen=True)
class MapEdge:
    """Every edge between one pair of services in one direction, of one state."""

    source: str
    target: str
    state: str
    """`ok` (declared and observed), `declared` (not observed yet), `undeclared` (observed only)."""
    path: str
    label: str
    label_x: float
    label_y: float
    vias: list[str]


@dataclass(frozen=True)
class EdgeRow:
    edge: Edge
    declared: bool
    observed: bool

    @property
    def state(self) -> str:
        if self.declared and self.observed:
            return "ok"
        return "declared" if self.declared else "undeclared"

    @property
    def kind_label(self) -> str:
        return {"grpc": "gRPC", "async": "event"}.get(self.edge.kind, "call out")


@dataclass(frozen=True)
class ServiceMap:
    nodes: list[MapNode]
    edges: list[MapEdge]
    rows: list[EdgeRow]
    width: int = MAP_WIDTH
    height: int = MAP_HEIGHT


def node_width(name: str) -> float:
    return max(110.0, 8.6 * len(name) + 28)


def service_map(observed: set[Edge]) -> ServiceMap:
    """Observed edges (`trace_edges.observed_edges`) drawn next to the declared `EDGES`.

    EventForge's services sit in a triangle; what they call out to (SES, webhook endpoints)
    on the right; any other service seen in the spans (a caller of its own) on the left.
    """
    rows = sorted(
        (EdgeRow(edge, edge in EDGES, edge in observed) for edge in EDGES | observed),
        key=lambda row: (row.edge.source, row.edge.target, row.edge.kind, row.edge.via),
    )
    names = sorted({name for row in rows for name in (row.edge.source, row.edge.target)})
    sources = {row.edge.source for row in rows}
    outside = [n for n in names if n not in _FIXED and n not in sources]
    callers = [n for n in names if n not in _FIXED and n in sources]
    positions = dict(_FIXED)
    for column, x, top in ((outside, _OUTSIDE_X, 200.0), (callers, _CALLERS_X, 60.0)):
        step = (MAP_HEIGHT - 30 - top) / max(1, len(column))
        for number, name in enumerate(column):
            positions[name] = (x, top + step * number + step / 2)
    nodes = [
        MapNode(name, x, y, node_width(name), service_colour(name), name not in _FIXED)
        for name, (x, y) in positions.items()
    ]
    groups: dict[tuple[str, str, str], list[Edge]] = {}
    for row in rows:
        groups.setdefault((row.edge.source, row.edge.target, row.state), []).append(row.edge)
    edges = []
    pair_counts: dict[tuple[str, str], int] = {}
    # A pair with observed edges labels those only; its declared, unseen ones are in the
    # tooltip and the table (two labels on near-parallel curves cannot both be read).
    observed_pairs = {(source, target) for source, target, state in groups if state != "declared"}
    for (source, target, state), members in sorted(groups.items()):
        lane = pair_counts.get((source, target), 0)
        pair_counts[(source, target)] = lane + 1
        path, label_x, label_y = _edge_path(
            positions[source], positions[target], lane, node_width(source), node_width(target)
        )
        edges.append(
            MapEdge(
                source=source,
                target=target,
                state=state,
                path=path,
                label=""
                if state == "declared" and (source, target) in observed_pairs
                else _label(members),
                label_x=label_x,
                label_y=label_y,
                vias=[edge.via for edge in members],
            )
        )
    return ServiceMap(nodes, edges, rows)


def _label(edges: Sequence[Edge]) -> str:
    if len(edges) == 1:
        return edges[0].via
    kinds = {edge.kind for edge in edges}
    return f"{len(edges)} {'events' if kinds == {'async'} else 'edges'}"


def _edge_path(
    source: tuple[float, float],
    target: tuple[float, float],
    lane: int,
    source_width: float,
    target_width: float,
) -> tuple[str, float, float]:
    """A curved path between two nodes (a loop for a self-edge) and where its label goes."""
    (x1, y1), (x2, y2) = source, target
    if source == target:
        top = y1 - _NODE_H / 2
        reach = 50 + 30 * lane
        path = (
            f"M {x1 - 30:.1f} {top:.1f} C {x1 - 60:.1f} {top - reach:.1f} "
            f"{x1 + 60:.1f} {top - reach:.1f} {x1 + 30:.1f} {top:.1f}"
        )
        return path, x1 + 90, top - reach * 0.55
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length  # to the left of the direction: A→B and B→A part
    bend = 36 + 44 * lane
    cx, cy = (x1 + x2) / 2 + nx * bend, (y1 + y2) / 2 + ny * bend
    start = _border((x1, y1), (cx, cy), source_width)
    end = _border((x2, y2), (cx, cy), target_width)
    path = f"M {start[0]:.1f} {start[1]:.1f} Q {cx:.1f} {cy:.1f} {end[0]:.1f} {end[1]:.1f}"
    # The label sits on the curve, at a point of its own per lane so lanes' labels part.
    t = _LABEL_AT[lane % len(_LABEL_AT)]
    mx = (1 - t) ** 2 * start[0] + 2 * (1 - t) * t * cx + t**2 * end[0]
    my = (1 - t) ** 2 * start[1] + 2 * (1 - t) * t * cy + t**2 * end[1]
    return path, mx, my


def _border(
    centre: tuple[float, float], toward: tuple[float, float], width: float
) -> tuple[float, float]:
    """Where the line from a node's centre toward a point leaves the node's box."""
    (x, y), (tx, ty) = centre, toward
    dx, dy = tx - x, ty - y
    if dx == 0 and dy == 0:
        return x, y
    scale = min(
        (width / 2 + 6) / abs(dx) if dx else math.inf,
        (_NODE_H / 2 + 6) / abs(dy) if dy else math.inf,
    )
    return x + dx * scale, y + dy * scale


# --- charts ------------------------------------------------------------------------------------

SPARK_W, SPARK_H = 180, 36


def sparkline(values: Sequence[float], width: int = SPARK_W, height: int = SPARK_H) -> str:
    """SVG polyline points of `values` scaled into width by height (empty for no values)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    if len(values) == 1:
        y = height / 2
        return f"0,{y:.1f} {width},{y:.1f}"
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
