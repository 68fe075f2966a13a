"""Metrics received on `POST /v1/metrics`, kept as short series for small charts.

Every process of the stack exports its OpenTelemetry metrics here (`eventforge up` points
`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` at the dashboard). A series is one metric of one service
with one set of attributes; it keeps its last points only, and only so many series are kept.
Sums and gauges chart their values; histograms their count and the average of each interval.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventforge.trace_edges import SERVICE_PREFIX

if TYPE_CHECKING:
    from eventforge.dashboard.otlp import MetricKind, MetricPoint

MAX_SERIES = 500
MAX_POINTS = 240
"""Points per series: four hours at the SDK's default export interval (60 s)."""


@dataclass
class Series:
    """The recent points of one metric of one service with one set of attributes."""

    service: str
    name: str
    description: str
    unit: str
    kind: MetricKind
    attributes: tuple[tuple[str, str], ...]
    cumulative: bool
    monotonic: bool
    points: deque[tuple[int, float, int]] = field(default_factory=lambda: deque(maxlen=MAX_POINTS))
    """(time in ns, value or histogram sum, histogram count)."""

    @property
    def label(self) -> str:
        """The service and the attributes' values (`orders · CreateOrder · 0`)."""
        service = self.service.removeprefix(SERVICE_PREFIX)
        return " · ".join([service, *(value for _key, value in self.attributes)])

    @property
    def title(self) -> str:
        """The service and the attributes with their names, for a tooltip."""
        attributes = ", ".join(f"{key}={value}" for key, value in self.attributes)
        return f"{self.service}" + (f" · {attributes}" if attributes else "")

    def chart_values(self) -> list[float]:
        """What the sparkline draws: values, or a histogram's average per interval."""
        if self.kind != "histogram":
            return [value for _t, value, _c in self.points]
        averages: list[float] = []
        previous: tuple[float, int] | None = None
        for _t, total, count in self.points:
            if not self.cumulative:
                if count:
                    averages.append(total / count)
                continue
            if previous is not None and count > previous[1]:
                averages.append((total - previous[0]) / (count - previous[1]))
            elif previous is None and count:
                averages.append(total / count)
            previous = (total, count)
        return averages

    def latest(self) -> str:
        """The latest value as text: a number, or a histogram's count and average."""
        if not self.points:
            return "-"
        _t, value, count = self.points[-1]
        if self.kind != "histogram":
            return format_number(value) + (f" {self.unit}" if self.unit else "")
        if not self.cumulative:
            count = sum(c for _t, _v, c in self.points)
            value = sum(v for _t, v, _c in self.points)
        average = value / count if count else 0.0
        unit = f" {self.unit}" if self.unit else ""
        return f"count {count} · avg {format_number(average)}{unit}"


def format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class MetricGroup:
    """The series of one metric name, for one card."""

    name: str
    description: str
    unit: str
    kind: MetricKind
    series: list[Series]


class MetricStore:
    """Series by (service, metric, attributes), newest points last; bounded."""

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self._series: dict[tuple[str, str, tuple[tuple[str, str], ...]], Series] = {}
        self._lock = threading.Lock()
        self.dropped_points = 0
        """Points of new series refused because MAX_SERIES were kept already."""

    def add(self, points: Sequence[MetricPoint]) -> int:
        """Keep the points; returns how many were kept."""
        kept = 0
        with self._lock:
            for point in points:
                key = (point.service, point.name, point.attributes)
                series = self._series.get(key)
                if series is None:
                    if len(self._series) >= self.max_series:
                        self.dropped_points += 1
                        continue
                    series = self._series[key] = Series(
                        service=point.service,
                        name=point.name,
                        description=point.description,
                        unit=point.unit,
                        kind=point.kind,
                        attributes=point.attributes,
                        cumulative=point.cumulative,
                        monotonic=point.monotonic,
                    )
                if series.points and point.time_unix_nano < series.points[-1][0]:
                    continue  # out of order (a retried export): the chart stays monotonic in time
                series.points.append((point.time_unix_nano, point.value, point.count))
                kept += 1
        return kept

    def groups(self) -> list[MetricGroup]:
        """The series grouped by metric name, sorted by name then label."""
        with self._lock:
            series = [
                Series(
                    s.service,
                    s.name,
                    s.description,
                    s.unit,
                    s.kind,
                    s.attributes,
                    s.cumulative,
                    s.monotonic,
                    deque(s.points, maxlen=MAX_POINTS),
                )
                for s in self._series.values()
            ]
        by_name: dict[str, list[Series]] = {}
        for one in series:
            by_name.setdefault(one.name, []).append(one)
        return [
            MetricGroup(
                name=name,
                description=members[0].description,
                unit=members[0].unit,
                kind=members[0].kind,
                series=sorted(members, key=lambda s: s.label),
            )
            for name, members in sorted(by_name.items())
        ]
