"""`make bench`: every benchmark with its baseline measured in the same run.

Shared machines are noisy, so each figure is a ratio against a baseline measured here, now,
with the subject and the baseline interleaved round by round and the median of the rounds'
figures reported. The run owns everything it uses (`bench.environment`): a temp dir, a fresh
PostgreSQL database (dropped at the end) and an AWS emulator for the in-process benchmarks;
the stack itself is `eventforge up` with its own emulator, on that database, tracing on (its
span file in the temp dir).

Phases:

1. backbone (`bench.messaging`), in this process with tracing on: the outbox relay vs a boto3
   publish_batch loop; the consumer vs a receive+delete loop; commit -> handled vs the
   emulator's publish -> receive, paced;
2. stack (`bench.stack`): `eventforge up` started `--startup-rounds` times (each to all
   SERVING, the last one kept), then CreateOrder with the load generator (`eventforge load`'s
   `run_load`) vs a bare grpcio no-op server in a subprocess, same client and concurrency,
   interleaved; the stack's RSS right after the last round. Before each baseline round the
   stack is given time to go quiet (its worker and relay catch up with the orders just
   placed), so the baseline does not share the CPUs with that backlog.

3. pipeline (`bench.pipeline`): a fresh `eventforge up` on a database of its own, orders placed at
   `--pipeline-rate` for `--pipeline-seconds` (CreateOrder with a customer email, open loop),
   each followed until CONFIRMED, its receipt rendered and its confirmation email sent; before
   it `--ceiling-rates`, 20 s each, ascending while the stack keeps up (everything done within
   5 s of the load's end). Per round: CreateOrder p50/p99, the drain time, what waited at the
   load's end, CPU milliseconds per order of each process and of PostgreSQL.

Writes `bench/results.json` (headline figures, goals, raw figures, per-round values) and
`bench/latency.png` (latency distributions), and prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import messaging, pipeline, procs, report
from bench.environment import ADMIN_URL, in_process_settings
from bench.stack import NoopServer, Stack
from eventforge.cli.load import LatencySummary, LoadResult, LoadSpec, Operation, run_load
from harness.workspace import Workspace, create_database, drop_database, workspace

HERE = Path(__file__).resolve().parent
GOAL_DRAIN_S = 5.0
"""A rate is kept up with when every order is done within this long after the load."""
CEILING_SECONDS = 20.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Collected:
    """Figures and latencies gathered by the phases."""

    figures: dict[str, Any] = field(default_factory=dict)
    rounds: dict[str, list[Any]] = field(default_factory=dict)
    series: dict[str, list[report.Series]] = field(default_factory=dict)
    committed_ns: dict[str, int] = field(default_factory=dict)

    def round(self, key: str, value: Any) -> None:
        self.rounds.setdefault(key, []).append(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every benchmark")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--client", choices=("aio", "sync"), default="aio")
    parser.add_argument(
        "--connections", type=int, default=4, help="client connections the calls spread over"
    )
    parser.add_argument("--load-seconds", type=float, default=8.0, help="per load round")
    parser.add_argument("--load-warmup", type=float, default=2.0, help="unmeasured start")
    parser.add_argument(
        "--settle-timeout", type=float, default=20.0, help="wait for a quiet stack before load"
    )
    parser.add_argument("--relay-events", type=int, default=300)
    parser.add_argument("--consumer-messages", type=int, default=200)
    parser.add_argument("--e2e-rounds", type=int, default=5, help="rounds of the paced test")
    parser.add_argument("--e2e-events", type=int, default=40, help="events per e2e round")
    parser.add_argument("--e2e-interval", type=float, default=0.05)
    parser.add_argument("--startup-rounds", type=int, default=3)
    parser.add_argument("--pipeline-rate", type=float, default=50.0, help="orders/s of the goal")
    parser.add_argument("--pipeline-seconds", type=float, default=60.0)
    parser.add_argument(
        "--ceiling-rates",
        default="10,15,20,25,30,40",
        help="orders/s tried before the goal round, ascending, 20 s each, until one is not "
        "kept up with",
    )
    parser.add_argument("--drain-timeout", type=float, default=90.0)
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="API processes per service in the stack (EVENTFORGE_API_PROCESSES; make up: 1)",
    )
    parser.add_argument("--only", choices=("backbone", "stack", "pipeline"), help="run one phase")
    parser.add_argument("--quick", action="store_true", help="1 round, small sizes (smoke)")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--chart", type=Path, default=HERE / "latency.png")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (spans, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.startup_rounds = 1, 1
        args.load_seconds, args.load_warmup = 3.0, 1.0
        args.relay_events = args.consumer_messages = 50
        args.e2e_events, args.e2e_rounds = 20, 1
        args.pipeline_rate, args.pipeline_seconds, args.ceiling_rates = 10.0, 5.0, ""
    return args


# --- backbone ---------------------------------------------------------------------------------


def backbone_phase(ws: Workspace, args: argparse.Namespace, out: Collected) -> None:
    from eventforge.runtime.telemetry import configure_telemetry, read_span_file

    settings = in_process_settings(ws)
    telemetry = configure_telemetry("bench", settings)
    backbone = messaging.Backbone(settings, telemetry.tracer)
    try:
        # Warm the emulator and the database up (first calls are slow); not measured.
        messaging.relay_pair(backbone, 20)
        messaging.consumer_pair(backbone, 20)
        _relay(backbone, args, out)
        _consumer(backbone, args, out)
        _e2e(backbone, args, out)
        telemetry.force_flush()
        spans = read_span_file(settings.spans_path)
        out.figures["e2e_breakdown_ms"] = messaging.e2e_breakdown(spans, out.committed_ns)
        log(f"e2e legs (median ms): {out.figures['e2e_breakdown_ms']}")
    finally:
        backbone.close()
        telemetry.shutdown()


def _relay(backbone: messaging.Backbone, args: argparse.Namespace, out: Collected) -> None:
    for n in range(args.rounds):
        base, subject = messaging.relay_pair(backbone, args.relay_events)
        ratio = subject.per_second / base.per_second
        out.round("boto3_publish_events_per_s", base.per_second)
        out.round("relay_events_per_s", subject.per_second)
        out.round("relay_publish_ratio", ratio)
        log(
            f"relay    round {n + 1}/{args.rounds}: publish_batch {base.per_second:7.1f}/s  "
            f"relay {subject.per_second:7.1f}/s  ratio {ratio:.3f}"
        )


def _consumer(backbone: messaging.Backbone, args: argparse.Namespace, out: Collected) -> None:
    for n in range(args.rounds):
        base, subject = messaging.consumer_pair(backbone, args.consumer_messages)
        ratio = subject.per_second / base.per_second
        out.round("receive_delete_per_s", base.per_second)
        out.round("consumer_per_s", subject.per_second)
        out.round("consumer_ratio", ratio)
        log(
            f"consumer round {n + 1}/{args.rounds}: receive+delete {base.per_second:6.1f}/s  "
            f"consumer {subject.per_second:6.1f}/s  ratio {ratio:.3f}"
        )


def _e2e(backbone: messaging.Backbone, args: argparse.Namespace, out: Collected) -> None:
    emulator_all: list[float] = []
    e2e_all: list[float] = []
    for n in range(args.e2e_rounds):
        base = messaging.emulator_round(backbone, args.e2e_events, args.e2e_interval)
        e2e = messaging.e2e_round(backbone, args.e2e_events, args.e2e_interval)
        subject = e2e.latencies
        out.committed_ns.update(e2e.committed_ns)
        emulator_all += base
        e2e_all += subject
        b, s = report.latency_ms(base), report.latency_ms(subject)
        out.round("emulator_p50_ms", b["p50"])
        out.round("e2e_p50_ms", s["p50"])
        out.round("e2e_p50_ratio", s["p50"] / b["p50"])
        log(
            f"e2e      round {n + 1}/{args.e2e_rounds}: emulator p50 {b['p50']:6.1f} ms "
            f"max {b['max']:6.1f} ms  commit->handled p50 {s['p50']:6.1f} ms "
            f"max {s['max']:6.1f} ms  p50 ratio {s['p50'] / b['p50']:.3f}"
        )
    # p99 over every round's events (one round has too few for its own p99).
    b, s = report.latency_ms(emulator_all), report.latency_ms(e2e_all)
    out.figures.update(
        emulator_p99_ms=b["p99"],
        e2e_p99_ms=s["p99"],
        e2e_p99_ratio=s["p99"] / b["p99"],
        emulator_pooled_p50_ms=b["p50"],
        e2e_pooled_p50_ms=s["p50"],
    )
    out.series["commit -> handled vs emulator publish -> receive (paced)"] = [
        report.Series("emulator publish -> receive", emulator_all),
        report.Series("commit -> consumer handled", e2e_all),
    ]


# --- stack ------------------------------------------------------------------------------------


def stack_phase(ws: Workspace, args: argparse.Namespace, out: Collected) -> None:
    noop = NoopServer(workers=16)
    stack: Stack | None = None
    try:
        for n in range(args.startup_rounds):
            stack = Stack(ws.root / "stack", ws.database_url, args.api_processes)
            seconds = stack.start()
            out.round("startup_s", seconds)
            out.round("startup_reported_s", stack.reported_ready_s)
            log(
                f"startup  round {n + 1}/{args.startup_rounds}: all SERVING after {seconds:.2f}s "
                f"(up reports {stack.reported_ready_s}s)"
            )
            if n < args.startup_rounds - 1:
                stack.stop()
        assert stack is not None
        noop.start()
        _load(stack, noop, args, out)
    finally:
        if stack is not None:
            stack.stop()
        noop.stop()
    spans = ws.root / "stack" / "spans.jsonl"
    out.figures["create_order_spans_per_call"] = _spans_per_call(spans, "/CreateOrder")
    out.figures["get_order_spans_per_call"] = _spans_per_call(spans, "/GetOrder")
    out.figures["stack_span_file_mb"] = (
        round(spans.stat().st_size / 2**20, 1) if spans.exists() else 0
    )


def pipeline_phase(ws: Workspace, args: argparse.Namespace, out: Collected) -> None:
    """The whole stack at fixed order rates, each order followed to its email (`pipeline`).

    First the ceiling: `--ceiling-rates` ascending, 20 s each, until one is not kept up with
    (everything done within 5 s of the load's end). Then the goal round, last, since a rate
    above the ceiling leaves a backlog behind.
    """
    # Its own database: the orders the stack phase placed are not its backlog.
    database_name, database_url = create_database(ADMIN_URL, "bench_pipeline")
    stack = Stack(ws.root / "pipeline", database_url, args.api_processes)
    rounds: list[pipeline.PipelineRound] = []
    ceiling: float | None = None
    try:
        stack.start()
        # Warm up: connections, pools, the first receipt's fonts; not measured.
        pipeline.run_round(stack, 5.0, 3.0, drain_timeout=args.drain_timeout, log=log)
        for rate in sorted(float(r) for r in args.ceiling_rates.split(",") if r):
            probe = pipeline.run_round(
                stack, rate, CEILING_SECONDS, drain_timeout=args.drain_timeout, log=log
            )
            log(f"pipeline {rate:g}/s for {CEILING_SECONDS:g}s: {probe.as_dict()}")
            rounds.append(probe)
            if not (probe.kept_up and (probe.drain_s or 0) <= GOAL_DRAIN_S):
                break
            ceiling = probe.achieved_rate
        goal = pipeline.run_round(
            stack,
            args.pipeline_rate,
            args.pipeline_seconds,
            drain_timeout=args.drain_timeout,
            log=log,
        )
        log(f"pipeline {goal.rate:g}/s for {goal.seconds:g}s: {goal.as_dict()}")
        rounds.append(goal)
    finally:
        stack.stop()
        drop_database(database_name, ADMIN_URL)
    out.figures["pipeline_drain_s"] = goal.drain_s
    out.figures["pipeline_orders_per_s"] = goal.achieved_rate
    out.figures["pipeline_create_p99_ms"] = goal.create_p99_ms
    out.figures["pipeline_failed_calls"] = goal.failed
    out.figures["pipeline_done_at_timeout"] = goal.done_at_timeout
    out.figures["pipeline_cpu_ms_per_order"] = goal.cpu_ms_per_order
    out.figures["pipeline_ceiling_orders_per_s"] = ceiling
    out.figures["pipeline_rounds"] = [r.as_dict() for r in rounds]


def _spec(
    target: str,
    args: argparse.Namespace,
    seconds: float,
    warmup: float,
    mix: dict[Operation, int] | None = None,
) -> LoadSpec:
    return LoadSpec(
        target=target,
        mix=mix or {"create": 1},
        concurrency=args.concurrency,
        duration=seconds,
        warmup=warmup,
        client=args.client,
        connections=args.connections,
    )


def _load(stack: Stack, noop: NoopServer, args: argparse.Namespace, out: Collected) -> None:
    waited, quiet = procs.wait_quiet(stack.pids, timeout=args.settle_timeout)
    log(f"stack quiet after {waited:.1f}s" + ("" if quiet else " (timed out)"))
    # A short unmeasured pass over both servers: connections, pools, prepared statements.
    with procs.frozen(stack.pids()):
        run_load(_spec(noop.address, args, 1.5, 0.5))
    run_load(_spec(stack.orders_addr, args, 1.5, 0.5))
    noop_all: list[float] = []
    create_all: list[float] = []
    get_all: list[float] = []
    errors = 0
    for n in range(args.rounds):
        # The baseline runs with the whole stack paused. The API rounds measure the orders API
        # with its database (PostgreSQL, outbox, tracing, logs) and the rest of the stack
        # paused too: the saga, receipts and emails the orders cause are the asynchronous
        # side's work (the pipeline phase measures it), done once the rounds are over.
        api = set(stack.api_pids("orders"))
        background = [pid for pid in stack.pids() if pid not in api]
        with procs.frozen(stack.pids()) as stopped:
            base = run_load(_spec(noop.address, args, args.load_seconds, args.load_warmup))
        with procs.frozen(background), _CpuPerCall(stack) as cpu:
            subject = run_load(_spec(stack.orders_addr, args, args.load_seconds, args.load_warmup))
        cpu.per_call(out, subject, args.load_seconds)
        if n == args.rounds - 1:
            memory = stack.memory()
            out.figures["stack_processes"] = [vars(p) for p in memory]
            out.figures["stack_rss_mb"] = round(sum(p.rss_mb for p in memory), 1)
        with procs.frozen(background):
            reads = run_load(
                _spec(stack.orders_addr, args, args.load_seconds, args.load_warmup, {"get": 1})
            )
        _record_load(out, n, args, base, subject, reads, len(stopped))
        noop_all += base.all_latencies
        create_all += subject.all_latencies
        get_all += reads.all_latencies
        errors += subject.error_count + base.error_count + reads.error_count
    out.figures["load_errors"] = errors
    out.figures["stack_backlog_after_load"] = stack.backlog()
    out.series[f"gRPC unary latency, {args.concurrency} in flight, client {args.client}"] = [
        report.Series("bare grpcio no-op server", noop_all),
        report.Series("CreateOrder (whole stack, PostgreSQL, tracing)", create_all),
        report.Series("GetOrder (whole stack, PostgreSQL, tracing)", get_all),
    ]


class _CpuPerCall:
    """CPU seconds of the orders process(es) and of PostgreSQL over a load round."""

    def __init__(self, stack: Stack) -> None:
        self.api = stack.api_pids("orders")
        self.postgres = procs.postgres_pids()

    def __enter__(self) -> _CpuPerCall:
        self.before = procs.cpu_seconds(self.api), procs.cpu_seconds(self.postgres)
        return self

    def __exit__(self, *_: object) -> None:
        self.after = procs.cpu_seconds(self.api), procs.cpu_seconds(self.postgres)

    def per_call(self, out: Collected, result: LoadResult, seconds: float) -> None:
        """Milliseconds per call; the round's calls are its QPS times its whole length."""
        calls = result.qps * seconds
        if calls <= 0:
            return
        api, postgres = (
            1000 * (a - b) / calls for a, b in zip(self.after, self.before, strict=True)
        )
        out.round("create_order_cpu_ms_api", api)
        out.round("create_order_cpu_ms_postgres", postgres)


def _spans_per_call(spans_path: Path, method: str) -> float | None:
    """Spans within each `method` server span (same trace, inside its time), on average."""
    from eventforge.runtime.telemetry import read_span_file

    if not spans_path.exists():
        return None
    records = read_span_file(spans_path)
    servers = [r for r in records if r["kind"] == "SERVER" and r["name"].endswith(method)]
    if not servers:
        return None
    by_trace: dict[str, list[Any]] = {}
    for record in records:
        by_trace.setdefault(record["trace_id"], []).append(record)
    inside = sum(
        1
        for server in servers
        for record in by_trace[server["trace_id"]]
        if server["start_unix_nano"] <= record["start_unix_nano"]
        and record["end_unix_nano"] <= server["end_unix_nano"]
    )
    return round(inside / len(servers), 2)


def _record_load(
    out: Collected,
    n: int,
    args: argparse.Namespace,
    base: LoadResult,
    subject: LoadResult,
    reads: LoadResult,
    frozen: int,
) -> None:
    b = LatencySummary.of(base.all_latencies)
    s = LatencySummary.of(subject.all_latencies)
    ratio = subject.qps / base.qps if base.qps else float("nan")
    get_ratio = reads.qps / base.qps if base.qps else float("nan")
    out.round("get_order_qps", reads.qps)
    out.round("get_order_p99_ms", LatencySummary.of(reads.all_latencies).p99)
    out.round("get_order_qps_ratio", get_ratio)
    out.round("noop_qps", base.qps)
    out.round("noop_p50_ms", b.p50)
    out.round("noop_p99_ms", b.p99)
    out.round("create_order_qps", subject.qps)
    out.round("create_order_p50_ms", s.p50)
    out.round("create_order_p99_ms", s.p99)
    out.round("create_order_qps_ratio", ratio)
    out.round("create_order_errors", subject.error_count)
    log(
        f"load     round {n + 1}/{args.rounds}: no-op {base.qps:7.1f} QPS p99 {b.p99:6.2f} ms  "
        f"CreateOrder {subject.qps:7.1f} QPS p50 {s.p50:6.2f} ms p99 {s.p99:6.2f} ms  "
        f"ratio {ratio:.3f}  errors {subject.error_count}  GetOrder {reads.qps:7.1f} QPS "
        f"ratio {get_ratio:.3f}  CPU per CreateOrder: API "
        f"{out.rounds['create_order_cpu_ms_api'][-1]:.2f} ms, PostgreSQL "
        f"{out.rounds['create_order_cpu_ms_postgres'][-1]:.2f} ms  ({frozen} stack processes "
        "paused for the baseline, all but the orders API for its rounds)"
    )


# --- results ----------------------------------------------------------------------------------

_PER_ROUND = (
    "noop_qps",
    "noop_p50_ms",
    "noop_p99_ms",
    "create_order_qps",
    "create_order_p50_ms",
    "create_order_p99_ms",
    "create_order_qps_ratio",
    "create_order_cpu_ms_api",
    "create_order_cpu_ms_postgres",
    "get_order_qps",
    "get_order_p99_ms",
    "get_order_qps_ratio",
    "boto3_publish_events_per_s",
    "relay_events_per_s",
    "relay_publish_ratio",
    "receive_delete_per_s",
    "consumer_per_s",
    "consumer_ratio",
    "emulator_p50_ms",
    "e2e_p50_ms",
    "e2e_p50_ratio",
    "startup_s",
    "startup_reported_s",
)


def summarise(out: Collected, args: argparse.Namespace, started: float) -> dict[str, Any]:
    """Medians of the rounds plus everything else, as the results document."""
    figures: dict[str, Any] = {}
    for key in _PER_ROUND:
        values = [v for v in out.rounds.get(key, []) if v is not None]
        if values:
            figures[key] = report.median(values)
    figures.update(out.figures)
    figures["rounds"] = out.rounds
    figures["config"] = {
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "client": args.client,
        "connections": args.connections,
        "load_seconds": args.load_seconds,
        "load_warmup_seconds": args.load_warmup,
        "relay_events": args.relay_events,
        "consumer_messages": args.consumer_messages,
        "e2e_rounds": args.e2e_rounds,
        "e2e_events_per_round": args.e2e_events,
        "e2e_interval_seconds": args.e2e_interval,
        "startup_rounds": args.startup_rounds,
        "tracing": "on (span files in the run's temp dir)",
        "database": "PostgreSQL (fresh database per run)",
        **messaging.describe(),
    }
    figures["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    figures["run_seconds"] = round(time.monotonic() - started, 1)
    return report.finish(figures)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out = Collected()
    with workspace("bench", admin=ADMIN_URL, keep=args.keep) as ws:
        log(f"workspace {ws.root}, database {ws.database_name}, emulator {ws.emulator.url}")
        if args.only in (None, "backbone"):
            backbone_phase(ws, args, out)
        if args.only in (None, "stack"):
            stack_phase(ws, args, out)
        if args.only in (None, "pipeline"):
            pipeline_phase(ws, args, out)
    document = summarise(out, args, started)
    report.write_results(document, args.output)
    if out.series:
        # The gRPC panel first: it holds the headline figure.
        panels = dict(sorted(out.series.items(), key=lambda item: "gRPC" not in item[0]))
        report.draw_chart(
            panels,
            args.chart,
            title=f"EventForge benchmarks, {document['finished_at']}, "
            f"{os.cpu_count()} CPUs, medians of {args.rounds} rounds in results.json",
        )
    print(report.render_table(document))
    print(report.render_costs(document))
    print(f"\nresults {args.output}\nchart   {args.chart}\nrun     {document['run_seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
