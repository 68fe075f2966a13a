"""The waterfall of one request id from span-file records: pure functions, no terminal needed.

`build_waterfall` selects every span carrying the request id and every span of a trace that
contains one (spans of that trace without the attribute still show), and lays them out per
trace in start order with their depth in the parent tree. `render` draws the rows as text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby

from eventforge.runtime.telemetry import SpanLink, SpanRecord

ASYNC_MARK = "⇢"
ERROR_MARK = "✗"
BAR_CHAR = "█"
MIN_BAR_WIDTH = 10
_ASYNC_KINDS = ("PRODUCER", "CONSUMER")


@dataclass(frozen=True)
class Row:
    """One span of the waterfall."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    depth: int
    """0 for a root (or a span whose parent is not in the file)."""
    offset_ms: float
    """Start, from the start of the trace's first span."""
    duration_ms: float
    trace_duration_ms: float
    """From the trace's first start to its last end."""
    service: str
    name: str
    kind: str
    async_hop: bool
    """PRODUCER or CONSUMER, linked, or child of another service's PRODUCER/CONSUMER span."""
    error: bool
    error_description: str | None = None
    request_id: str | None = None
    links: tuple[str, ...] = field(default_factory=tuple)
    """A readable description of each link (`service span-name`, or trace/span ids)."""


def build_waterfall(records: Iterable[SpanRecord], request_id: str) -> list[Row]:
    """The rows of every trace touching `request_id`: traces by start, spans by start within."""
    records = list(records)
    trace_ids = {r["trace_id"] for r in records if r.get("request_id") == request_id}
    spans: dict[tuple[str, str], SpanRecord] = {}
    for record in records:
        if record["trace_id"] in trace_ids:
            spans.setdefault((record["trace_id"], record["span_id"]), record)
    by_span_id = {span_id: r for (_trace, span_id), r in spans.items()}
    traces: dict[str, list[SpanRecord]] = {}
    for (trace_id, _span), record in spans.items():
        traces.setdefault(trace_id, []).append(record)
    rows: list[Row] = []
    ordered = sorted(traces.values(), key=lambda t: min(r["start_unix_nano"] for r in t))
    for trace in ordered:
        rows += _trace_rows(trace, by_span_id)
    return rows


def _trace_rows(trace: list[SpanRecord], by_span_id: dict[str, SpanRecord]) -> list[Row]:
    start = min(r["start_unix_nano"] for r in trace)
    end = max(max(r["end_unix_nano"], r["start_unix_nano"]) for r in trace)
    in_trace = {r["span_id"]: r for r in trace}
    depths = {r["span_id"]: _depth(r, in_trace) for r in trace}
    rows = [
        Row(
            trace_id=r["trace_id"],
            span_id=r["span_id"],
            parent_span_id=r["parent_span_id"],
            depth=depths[r["span_id"]],
            offset_ms=(r["start_unix_nano"] - start) / 1e6,
            duration_ms=max(0, r["end_unix_nano"] - r["start_unix_nano"]) / 1e6,
            trace_duration_ms=(end - start) / 1e6,
            service=r.get("service") or "?",
            name=r["name"],
            kind=r["kind"],
            async_hop=_is_async_hop(r, in_trace),
            error=r["status"]["code"] == "ERROR",
            error_description=r["status"].get("description"),
            request_id=r.get("request_id"),
            links=tuple(_describe_link(link, by_span_id) for link in r.get("links") or ()),
        )
        for r in trace
    ]
    rows.sort(key=lambda row: (row.offset_ms, row.depth, row.span_id))
    return rows


def _depth(record: SpanRecord, in_trace: dict[str, SpanRecord]) -> int:
    depth, seen = 0, {record["span_id"]}
    parent = record["parent_span_id"]
    while parent is not None and parent in in_trace and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = in_trace[parent]["parent_span_id"]
    return depth


def _is_async_hop(record: SpanRecord, in_trace: dict[str, SpanRecord]) -> bool:
    if record["kind"] in _ASYNC_KINDS or record.get("links"):
        return True
    parent = in_trace.get(record["parent_span_id"] or "")
    return (
        parent is not None
        and parent.get("service") != record.get("service")
        and parent["kind"] in _ASYNC_KINDS
    )


def _describe_link(link: SpanLink, by_span_id: dict[str, SpanRecord]) -> str:
    span_id, trace_id = link["span_id"], link["trace_id"]
    target = by_span_id.get(span_id)
    if target is not None and target["trace_id"] == trace_id:
        return f"{target.get('service') or '?'} {target['name']} (trace {trace_id[:8]}…)"
    return f"trace {trace_id[:8]}… span {span_id}"


def render(rows: Sequence[Row], width: int = 120) -> str:
    """The rows as text, one waterfall per trace, about `width` columns wide."""
    if not rows:
        return ""
    service_w = max(len("service"), *(len(r.service) for r in rows))
    kind_w = max(len("kind"), *(len(r.kind) for r in rows))
    name_w = max(len("span"), *(len(_tree_name(r)) for r in rows))

    def columns(offset: str, duration: str, service: str, kind: str, flags: str) -> str:
        return f"{offset:>10}{duration:>10}  {service:<{service_w}}  {kind:<{kind_w}}  {flags:<2} "

    name_at = len(columns("", "", "", "", ""))
    bar_w = max(MIN_BAR_WIDTH, width - name_at - name_w - 4)
    lines: list[str] = []
    for trace_id, group in groupby(rows, key=lambda r: r.trace_id):
        trace_rows = list(group)
        if lines:
            lines.append("")
        lines.append(_trace_header(trace_id, trace_rows))
        labels, ticks = ruler(trace_rows[0].trace_duration_ms, bar_w)
        lines.append(
            columns("offset ms", "dur ms", "service", "kind", "") + f"{'span':<{name_w}}   {labels}"
        )
        lines.append(" " * name_at + f"{'':<{name_w}}   {ticks}")
        for row in trace_rows:
            lines.append(
                columns(
                    _ms(row.offset_ms), _ms(row.duration_ms), row.service, row.kind, _flags(row)
                )
                + f"{_tree_name(row):<{name_w}}  |{_bar(row, bar_w)}|"
            )
            detail = " " * name_at + "  " * row.depth + "  ↳ "
            lines += [f"{detail}linked to {link}" for link in row.links]
            if row.error and row.error_description:
                lines.append(f"{detail}error: {row.error_description}")
    lines += [
        "",
        f"{ASYNC_MARK} async hop (producer, consumer or linked span)   {ERROR_MARK} error",
    ]
    return "\n".join(lines)


def ruler(total_ms: float, width: int) -> tuple[str, str]:
    """The time scale over `width` bar columns: its labels (0, the middle and the end, those
    that fit with two spaces between them) and the tick line under them, each `width` wide."""
    start, end, middle = "0 ms", f"{_ms(total_ms)} ms", f"{_ms(total_ms / 2)} ms"
    if len(start) + 2 + len(end) <= width:
        marks = [(0, start), (width - len(end), end)]
        mid_at = (width - len(middle)) // 2
        if len(start) + 2 <= mid_at and mid_at + len(middle) + 2 <= width - len(end):
            marks.insert(1, (mid_at, middle))
    else:  # too narrow for both ends: the end alone says the scale
        marks = [(max(0, width - len(end)), end[-width:])]
    labels = [" "] * width
    for at, text in marks:
        labels[at : at + len(text)] = text
    ticks = ["─"] * width
    ticks[0], ticks[-1] = "├", "┤"
    if len(marks) == 3:
        ticks[width // 2] = "┼"
    return "".join(labels), "".join(ticks)


def _trace_header(trace_id: str, rows: Sequence[Row]) -> str:
    services = sorted({r.service for r in rows})
    errors = sum(r.error for r in rows)
    parts = [
        f"trace {trace_id}",
        f"{len(rows)} span{'s' if len(rows) != 1 else ''}",
        f"{_ms(rows[0].trace_duration_ms)} ms",
        ", ".join(services),
    ]
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    return "  ·  ".join(parts)


def _tree_name(row: Row) -> str:
    return "  " * (row.depth - 1) + "└ " + row.name if row.depth else row.name


def _flags(row: Row) -> str:
    return (ASYNC_MARK if row.async_hop else "") + (ERROR_MARK if row.error else "")


def _bar(row: Row, width: int) -> str:
    total = row.trace_duration_ms
    if total <= 0:
        return BAR_CHAR * width
    first = min(width - 1, math.floor(row.offset_ms / total * width))
    last = max(first + 1, min(width, math.ceil((row.offset_ms + row.duration_ms) / total * width)))
    return " " * first + BAR_CHAR * (last - first) + " " * (width - last)


def _ms(value: float) -> str:
    return f"{value:.2f}"
