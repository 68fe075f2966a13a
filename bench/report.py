"""The benchmark report: goals, the results table, `results.json` and the latency chart."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventforge.cli.load import percentile


@dataclass(frozen=True)
class Goal:
    """A headline figure, the direction that is better, and its threshold."""

    key: str
    title: str
    better: str
    """`>=` (higher is better) or `<=` (lower is better)."""
    threshold: float
    unit: str = ""
    subject: str = ""
    """Key of the raw figure of the subject (a ratio's numerator, or a figure beside it)."""
    baseline: str = ""
    """Key of the raw figure of the in-run baseline (a ratio's denominator)."""
    subject_label: str = ""
    baseline_label: str = ""
    unmeasured_fails: bool = False
    """A figure the run could not measure means the goal was missed (a drain that did not end
    within its timeout has no time), not that it is unknown."""

    def met(self, value: float | None) -> bool | None:
        if value is None or math.isnan(value):
            return False if self.unmeasured_fails else None
        return value >= self.threshold if self.better == ">=" else value <= self.threshold

    @property
    def text(self) -> str:
        return f"{self.better} {self.threshold:g}{self.unit}"


GOALS = (
    Goal(
        "create_order_qps_ratio",
        "CreateOrder QPS / bare grpcio no-op QPS, same client, 16 in flight",
        ">=",
        0.2,
        subject="create_order_qps",
        baseline="noop_qps",
        subject_label="CreateOrder",
        baseline_label="no-op",
    ),
    Goal(
        "create_order_p99_ms",
        "CreateOrder p99 at 16 in flight",
        "<=",
        40,
        " ms",
        subject="create_order_p50_ms",
        baseline="noop_p99_ms",
        subject_label="p50",
        baseline_label="no-op p99",
    ),
    Goal(
        "get_order_qps_ratio",
        "GetOrder QPS / bare grpcio no-op QPS, same client, 16 in flight",
        ">=",
        0.4,
        subject="get_order_qps",
        baseline="noop_qps",
        subject_label="GetOrder",
        baseline_label="no-op",
    ),
    Goal(
        "relay_publish_ratio",
        "outbox relay events/s / boto3 publish_batch(10) events/s",
        ">=",
        0.9,
        subject="relay_events_per_s",
        baseline="boto3_publish_events_per_s",
        subject_label="relay",
        baseline_label="publish_batch",
    ),
    Goal(
        "e2e_p50_ratio",
        "commit -> handled p50 / emulator publish -> receive p50",
        "<=",
        1.5,
        subject="e2e_p50_ms",
        baseline="emulator_p50_ms",
        subject_label="p50",
        baseline_label="p50",
    ),
    Goal(
        "consumer_ratio",
        "consumer processed/s / plain receive+delete/s",
        ">=",
        0.9,
        subject="consumer_per_s",
        baseline="receive_delete_per_s",
        subject_label="consumer",
        baseline_label="receive+delete",
    ),
    Goal(
        "stack_rss_mb",
        "resident memory of the whole stack after the load",
        "<=",
        600,
        " MB",
        subject="stack_processes",
    ),
    Goal(
        "pipeline_drain_s",
        "orders placed at 50/s for 60 s, whole stack: seconds past the load's end until every "
        "one is CONFIRMED, its receipt rendered and its confirmation email sent",
        "<=",
        5,
        " s",
        subject="pipeline_orders_per_s",
        baseline="pipeline_create_p99_ms",
        subject_label="placed/s",
        baseline_label="CreateOrder p99 ms",
        unmeasured_fails=True,
    ),
    Goal(
        "startup_s",
        "eventforge up (PostgreSQL) to all SERVING",
        "<=",
        10,
        " s",
        subject="startup_reported_s",
        subject_label="up reports",
    ),
)

HEADLINES = tuple(goal.key for goal in GOALS)


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else math.nan


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in ms of a set of latencies in seconds."""
    ordered = sorted(seconds)
    return {
        "p50": ms(percentile(ordered, 0.5)),
        "p90": ms(percentile(ordered, 0.9)),
        "p99": ms(percentile(ordered, 0.99)),
        "max": ms(ordered[-1]) if ordered else math.nan,
    }


def _number(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, Mapping):
        return {str(k): _number(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_number(v) for v in value]
    return value


def evaluate(figures: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """For every goal: the figure, the goal as text and whether it was met."""
    return {
        goal.key: {
            "value": _number(figures.get(goal.key)),
            "goal": goal.text,
            "met": goal.met(figures.get(goal.key)),
        }
        for goal in GOALS
    }


def finish(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The results document: headline figures first, then goals, then everything else."""
    document: dict[str, Any] = {key: _number(figures.get(key)) for key in HEADLINES}
    document["goals"] = evaluate(figures)
    for key, value in figures.items():
        if key not in document:
            document[key] = _number(value)
    return document


def write_results(document: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _fmt(value: Any) -> str:
    """Three significant digits below 100 (ratios stay exact enough to judge), else one decimal."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _raw(document: Mapping[str, Any], key: str, label: str) -> str:
    if not key:
        return ""
    value = document.get(key)
    if key == "stack_processes" and isinstance(value, list):
        biggest = sorted(value, key=lambda p: -p["rss_mb"])[:2]
        return "largest: " + ", ".join(f"{p['name']} {p['rss_mb']:.0f}" for p in biggest)
    if value is None:
        return "-"
    unit = " ms" if key.endswith("_ms") else ("/s" if "per_s" in key or "qps" in key else "")
    unit = " s" if key.endswith("_s") and not key.endswith("per_s") else unit
    return f"{label} {_fmt(value)}{unit}".strip()


COSTS = (
    ("create_order_cpu_ms_api", "CPU per CreateOrder, orders process(es)", " ms"),
    ("create_order_cpu_ms_postgres", "CPU per CreateOrder, PostgreSQL", " ms"),
    ("create_order_spans_per_call", "spans per CreateOrder (request path)", ""),
    ("get_order_spans_per_call", "spans per GetOrder (request path)", ""),
)
"""Where a call's time goes: reported with the goals, medians of the rounds."""


def render_costs(document: Mapping[str, Any]) -> str:
    """One line per cost figure that the run measured."""
    return "\n".join(
        f"{label:<45} {_fmt(document[key])}{unit}"
        for key, label, unit in COSTS
        if document.get(key) is not None
    )


def render_table(document: Mapping[str, Any]) -> str:
    """The results table: figure, goal, met, subject and baseline raw figures, per-round values."""
    header = ("figure", "value", "goal", "met", "subject", "in-run baseline", "rounds")
    rows = [header]
    goals = document.get("goals", {})
    for goal in GOALS:
        verdict = goals.get(goal.key, {}).get("met")
        per_round = document.get("rounds", {}).get(goal.key) or []
        rows.append(
            (
                goal.key,
                _fmt(document.get(goal.key)),
                goal.text.strip(),
                {True: "yes", False: "NO", None: "?"}[verdict],
                _raw(document, goal.subject, goal.subject_label),
                _raw(document, goal.baseline, goal.baseline_label),
                " ".join(_fmt(v) for v in per_round),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


@dataclass(frozen=True)
class Series:
    """Latencies (seconds) of one curve of the chart."""

    label: str
    seconds: Sequence[float]


def draw_chart(panels: Mapping[str, Sequence[Series]], path: Path, title: str = "") -> None:
    """One panel per entry: the latency CDF of each series (log scale), p50/p99 in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    for axis, (name, series) in zip(axes[0], panels.items(), strict=True):
        for one in series:
            ordered = sorted(v * 1000 for v in one.seconds)
            if not ordered:
                continue
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            p50, p99 = percentile(ordered, 0.5), percentile(ordered, 0.99)
            axis.step(
                ordered,
                fractions,
                where="post",
                label=f"{one.label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(ordered)})",
            )
        axis.set_xscale("log")
        axis.set_xlabel("latency (ms, log scale)")
        axis.set_ylabel("fraction of calls at or below")
        axis.set_ylim(0, 1.01)
        axis.axhline(0.5, color="grey", linewidth=0.5, linestyle=":")
        axis.axhline(0.99, color="grey", linewidth=0.5, linestyle=":")
        axis.grid(True, which="both", linewidth=0.3)
        axis.set_title(name)
        axis.legend(loc="lower right", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
