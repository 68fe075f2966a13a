"""The spans the dashboard shows: the stack's span file, tailed, plus spans received over OTLP.

The span file is only read (from where the last read stopped; an unfinished last line waits for
the next read, as `read_span_file` does). Spans received on `POST /v1/traces` are kept in memory,
bounded: the span file is the stack's own append-only log, written by several processes whose
batches must stay whole, and a viewer that stays out of it can neither interleave a line nor
fill the disk with another service's spans; received spans last as long as the dashboard.
Both are bounded (the newest spans win), and a span in both places is shown once.

Each span is kept as its JSON line plus the few fields the lists and lookups need (a decoded
record costs about five times its line); pages decode the spans they draw.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from eventforge.trace_edges import SERVICE_PREFIX

if TYPE_CHECKING:
    from eventforge.runtime.telemetry import SpanRecord
    from eventforge.trace_edges import Edge

MAX_FILE_SPANS = 50_000
"""Spans of the span file kept (about 1.5 KB each)."""
MAX_RECEIVED_SPANS = 20_000
"""Spans received over OTLP kept."""
MAX_INITIAL_BYTES = 64 * 1024 * 1024
"""A longer span file is read from this far before its end when the dashboard starts."""
_NOISE_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def short_service(service: str | None) -> str:
    """`orders` for `eventforge-orders`; other services' names as they are."""
    return (service or "?").removeprefix(SERVICE_PREFIX)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class Entry:
    """One span: its line of JSON and what the index needs of it."""

    __slots__ = (
        "database",
        "end",
        "error",
        "event_id",
        "line",
        "name",
        "noise",
        "order_id",
        "request_id",
        "service",
        "span_id",
        "start",
        "trace_id",
    )

    def __init__(self, line: bytes, record: dict[str, Any]) -> None:
        attributes = record.get("attributes") or {}
        status = record.get("status") or {}
        self.line = line
        self.trace_id: str = str(record["trace_id"])
        self.span_id: str = str(record["span_id"])
        self.name: str = sys.intern(str(record.get("name", "")))
        self.service: str = sys.intern(short_service(record.get("service")))
        self.start: int = int(record.get("start_unix_nano") or 0)
        self.end: int = max(self.start, int(record.get("end_unix_nano") or 0))
        self.error: bool = status.get("code") == "ERROR"
        self.request_id: str | None = _text(record.get("request_id"))
        self.order_id: str | None = _text(attributes.get("eventforge.order_id"))
        self.event_id: str | None = _text(attributes.get("eventforge.event_id"))
        self.noise: bool = self.name.startswith(_NOISE_PREFIXES)
        self.database: bool = "db.system" in attributes

    def record(self) -> SpanRecord:
        return cast("SpanRecord", json.loads(self.line))


@dataclass(frozen=True)
class RequestSummary:
    """One request id: when, how long, where and whether anything failed."""

    request_id: str
    start_unix_nano: int
    end_unix_nano: int
    spans: int
    services: tuple[str, ...]
    root: str
    """The name of the request's first span."""
    errors: int
    trace_ids: tuple[str, ...]
    noise: bool
    """Only health checks or reflection calls."""

    @property
    def duration_ms(self) -> float:
        return (self.end_unix_nano - self.start_unix_nano) / 1e6


@dataclass
class SpanIndex:
    """The spans at one moment, indexed the ways the pages look them up."""

    entries: list[Entry]
    by_trace: dict[str, list[Entry]] = field(default_factory=dict)
    requests: dict[str, RequestSummary] = field(default_factory=dict)
    orders: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    """Order id (`eventforge.order_id` attribute) → (last mention, the traces mentioning it)."""
    by_event: dict[str, list[Entry]] = field(default_factory=dict)
    """Event id (`eventforge.event_id` attribute) → the spans naming it."""
    _observed: set[Edge] | None = None

    @classmethod
    def build(cls, entries: list[Entry]) -> SpanIndex:
        index = cls(entries)
        by_request: dict[str, list[Entry]] = {}
        for entry in entries:
            index.by_trace.setdefault(entry.trace_id, []).append(entry)
            if entry.request_id:
                by_request.setdefault(entry.request_id, []).append(entry)
            if entry.order_id:
                last, traces = index.orders.get(entry.order_id, (0, set()))
                traces.add(entry.trace_id)
                index.orders[entry.order_id] = (max(last, entry.start), traces)
            if entry.event_id:
                index.by_event.setdefault(entry.event_id, []).append(entry)
        for request_id, spans in by_request.items():
            first = min(spans, key=lambda e: e.start)
            index.requests[request_id] = RequestSummary(
                request_id=request_id,
                start_unix_nano=first.start,
                end_unix_nano=max(e.end for e in spans),
                spans=len(spans),
                services=tuple(sorted({e.service for e in spans})),
                root=first.name,
                errors=sum(e.error for e in spans),
                trace_ids=tuple(sorted({e.trace_id for e in spans})),
                noise=all(e.noise for e in spans),
            )
        return index

    def __len__(self) -> int:
        return len(self.entries)

    def recent_requests(
        self, limit: int = 200, *, query: str = "", include_noise: bool = False
    ) -> list[RequestSummary]:
        """Newest first; `query` matches the request id, a trace id, a service or the root."""
        needle = query.strip().lower()
        found = [
            summary
            for summary in self.requests.values()
            if (include_noise or not summary.noise)
            and (
                not needle
                or needle in summary.request_id.lower()
                or needle in summary.root.lower()
                or any(needle in s for s in summary.services)
                or any(t.startswith(needle) for t in summary.trace_ids)
            )
        ]
        found.sort(key=lambda s: s.start_unix_nano, reverse=True)
        return found[:limit]

    def trace_records(self, trace_id: str) -> list[SpanRecord]:
        return [entry.record() for entry in self.by_trace.get(trace_id, [])]

    def request_records(self, request_id: str) -> list[SpanRecord]:
        """Every span of every trace that carries the request id."""
        summary = self.requests.get(request_id)
        if summary is None:
            return []
        return [r for trace_id in summary.trace_ids for r in self.trace_records(trace_id)]

    def order_records(self, order_id: str) -> list[SpanRecord]:
        """Every span of the traces that mention the order."""
        _last, traces = self.orders.get(order_id, (0, set()))
        return [r for trace_id in sorted(traces) for r in self.trace_records(trace_id)]

    def event_records(self, event_ids: Iterable[str]) -> list[SpanRecord]:
        """The spans that name one of the events (`eventforge.event_id`)."""
        return [e.record() for event_id in event_ids for e in self.by_event.get(event_id, [])]

    def observed_edges(self) -> set[Edge]:
        """`trace_edges.observed_edges` of these spans, computed once. Database statements,
        leaves inside one service and most of the spans, are left out."""
        if self._observed is None:
            from eventforge.trace_edges import observed_edges

            self._observed = observed_edges(e.record() for e in self.entries if not e.database)
        return self._observed

    def recent_orders(self, limit: int = 50) -> list[tuple[str, int]]:
        """Order ids the spans mention, the most recently mentioned first."""
        latest = ((order_id, last) for order_id, (last, _traces) in self.orders.items())
        return sorted(latest, key=lambda item: item[1], reverse=True)[:limit]


class SpanStore:
    """The span file (tailed on every look) and the spans received over OTLP, merged."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_file_spans: int = MAX_FILE_SPANS,
        max_received_spans: int = MAX_RECEIVED_SPANS,
        max_initial_bytes: int = MAX_INITIAL_BYTES,
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._from_file: deque[Entry] = deque(maxlen=max_file_spans)
        self._received: deque[Entry] = deque(maxlen=max_received_spans)
        self._max_initial_bytes = max_initial_bytes
        self._offset = 0
        self._inode: tuple[int, int] | None = None
        self._version = 0
        self._index: SpanIndex | None = None
        self._index_version = -1
        self.skipped_lines = 0
        """Lines of the span file that were not span records."""

    def add(self, records: Sequence[SpanRecord]) -> int:
        """Keep spans received over OTLP; returns how many."""
        entries = [
            Entry(json.dumps(r, separators=(",", ":")).encode(), cast("dict[str, Any]", r))
            for r in records
        ]
        with self._lock:
            self._received.extend(entries)
            if entries:
                self._version += 1
        return len(entries)

    def index(self) -> SpanIndex:
        """Every span known now (the span file read up to its end), indexed."""
        with self._lock:
            self._read_file()
            if self._index is None or self._index_version != self._version:
                self._index = SpanIndex.build(self._merged())
                self._index_version = self._version
            return self._index

    def _merged(self) -> list[Entry]:
        seen: set[tuple[str, str]] = set()
        merged: list[Entry] = []
        for entry in (*self._from_file, *self._received):
            key = (entry.trace_id, entry.span_id)
            if key not in seen:
                seen.add(key)
                merged.append(entry)
        return merged

    def _read_file(self) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("rb") as file:
                status = os.fstat(file.fileno())
                inode = (status.st_dev, status.st_ino)
                if inode != self._inode or status.st_size < self._offset:
                    # A new file (removed, rotated, `make clean`): start over.
                    self._from_file.clear()
                    self._inode = inode
                    self._offset = max(0, status.st_size - self._max_initial_bytes)
                    self._version += 1
                    if self._offset:
                        file.seek(self._offset - 1)
                        self._offset += len(file.readline()) - 1  # to the next whole line
                if status.st_size == self._offset:
                    return
                file.seek(self._offset)
                data = file.read(status.st_size - self._offset)
        except FileNotFoundError:
            if self._inode is not None:
                self._from_file.clear()
                self._inode, self._offset = None, 0
                self._version += 1
            return
        complete = data.rfind(b"\n") + 1  # an unfinished last line waits for the next read
        if not complete:
            return
        self._offset += complete
        self._from_file.extend(self._parse(data[:complete].splitlines()))
        self._version += 1

    def _parse(self, lines: Iterable[bytes]) -> Iterable[Entry]:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError("not an object")
                yield Entry(line, record)
            except (ValueError, TypeError, KeyError):
                self.skipped_lines += 1
