"""The bench report on synthetic figures: goals, table, results.json, chart; /proc helpers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import procs, report
from bench.run import Collected, parse_args, summarise

SYNTHETIC: dict[str, Any] = {
    "create_order_qps_ratio": 0.42,
    "create_order_p99_ms": 45.5,
    "get_order_qps_ratio": 0.35,
    "get_order_qps": 1050.0,
    "create_order_cpu_ms_api": 3.25,
    "create_order_cpu_ms_postgres": 1.1,
    "create_order_spans_per_call": 2.0,
    "relay_publish_ratio": 0.93,
    "e2e_p50_ratio": float("nan"),
    "consumer_ratio": 0.81,
    "stack_rss_mb": 512.0,
    "startup_s": 9.9,
    "create_order_qps": 1260.0,
    "noop_qps": 3000.0,
    "create_order_p50_ms": 11.0,
    "noop_p99_ms": 7.5,
    "stack_processes": [
        {"pid": 1, "name": "orders-api", "rss_mb": 120.0},
        {"pid": 2, "name": "emulator", "rss_mb": 392.0},
    ],
}


def test_goals_are_evaluated_in_their_direction() -> None:
    goals = report.evaluate(SYNTHETIC)
    assert goals["create_order_qps_ratio"]["met"] is True
    assert goals["create_order_p99_ms"]["met"] is False
    assert goals["get_order_qps_ratio"]["met"] is False
    assert goals["relay_publish_ratio"]["met"] is True
    assert goals["e2e_p50_ratio"]["met"] is None  # not measured
    assert goals["consumer_ratio"]["met"] is False
    assert goals["stack_rss_mb"]["met"] is True
    assert goals["startup_s"] == {"value": 9.9, "goal": "<= 10 s", "met": True}


def test_results_document_table_and_file(tmp_path: Path) -> None:
    document = report.finish({**SYNTHETIC, "rounds": {"create_order_qps_ratio": [0.4, 0.42]}})
    assert list(document)[: len(report.HEADLINES)] == list(report.HEADLINES)
    assert document["e2e_p50_ratio"] is None
    assert document["goals"]["startup_s"]["met"] is True
    path = tmp_path / "out" / "results.json"
    report.write_results(document, path)
    assert json.loads(path.read_text())["noop_qps"] == 3000.0
    table = report.render_table(document)
    lines = table.splitlines()
    assert len(lines) == 2 + len(report.GOALS)
    row = next(line for line in lines if line.startswith("create_order_qps_ratio"))
    assert "CreateOrder 1,260.0/s" in row
    assert "no-op 3,000.0/s" in row
    assert row.split()[1] == "0.42"
    assert "yes" in row
    assert "0.4 0.42" in row
    assert "largest: emulator 392, orders-api 120" in table
    assert "NO" in next(line for line in lines if line.startswith("create_order_p99_ms"))
    costs = report.render_costs(document).splitlines()
    assert costs == [
        "CPU per CreateOrder, orders process(es)       3.25 ms",
        "CPU per CreateOrder, PostgreSQL               1.1 ms",
        "spans per CreateOrder (request path)          2",
    ]


def test_summarise_takes_medians_of_the_rounds() -> None:
    out = Collected()
    for value in (0.3, 0.5, 0.4):
        out.round("create_order_qps_ratio", value)
    out.round("startup_s", 7.0)
    out.figures["stack_rss_mb"] = 480.0
    document = summarise(out, parse_args(["--quick"]), time.monotonic())
    assert document["create_order_qps_ratio"] == 0.4
    assert document["startup_s"] == 7.0
    assert document["goals"]["stack_rss_mb"]["met"] is True
    assert document["rounds"]["create_order_qps_ratio"] == [0.3, 0.5, 0.4]
    assert document["config"]["rounds"] == 1
    json.dumps(document, allow_nan=False)


def test_chart_is_a_png(tmp_path: Path) -> None:
    rng = random.Random(7)
    panels = {
        "gRPC": [
            report.Series("no-op", [rng.lognormvariate(-6, 0.4) for _ in range(500)]),
            report.Series("CreateOrder", [rng.lognormvariate(-4.5, 0.6) for _ in range(300)]),
        ],
        "end to end": [
            report.Series("emulator", [rng.uniform(0.01, 0.05) for _ in range(100)]),
            report.Series("empty", []),
        ],
    }
    path = tmp_path / "latency.png"
    report.draw_chart(panels, path, title="synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_proc_helpers_see_a_process_tree_and_can_freeze_it() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(0.01)"],
    )
    try:
        tree = procs.descendants(os.getpid())
        assert os.getpid() in tree
        assert child.pid in tree
        assert procs.rss_bytes(os.getpid()) > 10 * 2**20
        assert procs.rss_bytes(2**22 + 12345) == 0
        memory = {p.pid: p for p in procs.memory_of_tree(os.getpid())}
        assert memory[child.pid].rss_mb > 1
        with procs.frozen([child.pid]) as stopped:
            assert stopped == [child.pid]
            time.sleep(0.1)
            assert procs._stat_fields(child.pid)[0] == "T"  # type: ignore[index]
        time.sleep(0.1)
        assert procs._stat_fields(child.pid)[0] in "RS"  # type: ignore[index]
        waited, quiet = procs.wait_quiet(lambda: [child.pid], window=0.2, timeout=2)
        assert quiet
        assert waited < 2.5
    finally:
        child.kill()
        child.wait()


def test_an_unmeasured_figure_is_unknown_unless_its_goal_says_it_fails() -> None:
    goals = {goal.key: goal for goal in report.GOALS}
    assert goals["create_order_qps_ratio"].met(None) is None
    # A drain that did not end within its timeout has no time: the goal was missed.
    assert goals["pipeline_drain_s"].met(None) is False
    assert goals["pipeline_drain_s"].met(4.2) is True
    assert goals["pipeline_drain_s"].met(11.3) is False
