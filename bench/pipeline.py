"""End-to-end throughput of the local stack: orders placed at a fixed rate, each one followed
until it is CONFIRMED, its PDF receipt rendered and its confirmation email sent.

The load is `eventforge load`'s open loop (`--rate`): CreateOrder with a customer email, so
that each order runs the saga (reserve, charge, confirm), files renders its receipt and the
notifier sends two emails (order confirmed, receipt ready). After the load, the round waits
until every order it placed has all three done; how long that takes past the load's end is
the backlog the stack built up. A rate the stack keeps up with drains within seconds; above
its ceiling the backlog grows with the load's length.

Per round: calls placed and failed, CreateOrder p50/p99 during the load, seconds from the
load's end until everything was done (`drain_s`, None if `drain_timeout` passed first), what
was still waiting when the load ended, and CPU milliseconds per order of every process of the
stack (and PostgreSQL) over the load and the drain.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from bench import procs
from bench.stack import Stack, short_name
from eventforge.cli.load import LatencySummary, LoadSpec, run_load
from harness.workspace import dsn

_DONE = """
SELECT
  (SELECT count(*) FROM orders.orders),
  (SELECT count(*) FROM orders.orders WHERE status = 'CONFIRMED'),
  (SELECT count(*) FROM files.files WHERE kind = 'RECEIPT' AND status = 'PROCESSED'),
  (SELECT count(*) FROM notifier.notifications
    WHERE event_type = 'order.confirmed' AND status = 'SENT')
"""
"""Orders, confirmed orders, rendered receipts, confirmation emails sent."""

_WAITING = """
SELECT
  (SELECT count(*) FROM orders.orders WHERE status = 'PENDING'),
  (SELECT count(*) FROM orders.outbox WHERE published_at IS NULL),
  (SELECT count(*) FROM files.outbox WHERE published_at IS NULL),
  (SELECT count(*) FROM notifier.outbox WHERE published_at IS NULL)
"""


@dataclass(frozen=True)
class Progress:
    orders: int
    confirmed: int
    receipts: int
    emails: int

    def done(self, baseline: Progress, placed: int) -> bool:
        return (
            self.confirmed - baseline.confirmed >= placed
            and self.receipts - baseline.receipts >= placed
            and self.emails - baseline.emails >= placed
        )


@dataclass
class PipelineRound:
    rate: float
    seconds: float
    placed: int
    failed: int
    achieved_rate: float
    create_p50_ms: float | None
    create_p99_ms: float | None
    drain_s: float | None
    """Seconds from the load's end until every placed order was done; None: not within the
    drain timeout."""
    waiting_at_load_end: dict[str, int]
    done_at_timeout: dict[str, int] | None
    """When the drain timed out: how many orders were confirmed, receipted and emailed."""
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)

    @property
    def kept_up(self) -> bool:
        return self.drain_s is not None and self.failed == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Connection = psycopg.Connection[tuple[Any, ...]]


def _progress(connection: Connection) -> Progress:
    row = connection.execute(_DONE).fetchone()
    assert row is not None
    return Progress(*row)


def _waiting(connection: Connection) -> dict[str, int]:
    row = connection.execute(_WAITING).fetchone()
    assert row is not None
    names = ("pending_orders", "orders_outbox", "files_outbox", "notifier_outbox")
    return dict(zip(names, row, strict=True))


def _cpu_by_process(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each of the stack's processes by short name, and PostgreSQL's."""
    seconds: dict[str, float] = defaultdict(float)
    for pid in stack.pids():
        seconds[short_name(procs.command_line(pid))] += procs.cpu_seconds([pid])
    seconds["postgresql"] = procs.cpu_seconds(procs.postgres_pids())
    return seconds


def run_round(
    stack: Stack,
    rate: float,
    seconds: float,
    *,
    drain_timeout: float,
    concurrency: int = 256,
    log: Any = print,
) -> PipelineRound:
    """Place orders at `rate` for `seconds`, then wait for all of them to be done.

    One connection watches the round: a new one per look (10 a second while draining) would
    add PostgreSQL's backend start-ups to the CPU the round measures.
    """
    with psycopg.connect(dsn(stack.database_url), autocommit=True, connect_timeout=5) as db:
        return _round(stack, db, rate, seconds, drain_timeout, concurrency, log)


def _round(
    stack: Stack,
    db: Connection,
    rate: float,
    seconds: float,
    drain_timeout: float,
    concurrency: int,
    log: Any,
) -> PipelineRound:
    baseline = _progress(db)
    cpu_before = _cpu_by_process(stack)
    spec = LoadSpec(
        target=stack.orders_addr,
        mix={"create": 1},
        concurrency=concurrency,
        rate=rate,
        duration=seconds,
        client="aio",
        connections=4,
    )
    result = run_load(spec)
    load_end = time.monotonic()
    waiting = _waiting(db)
    placed = result.ok
    drain_s = None
    progress = baseline
    next_report = load_end + 5
    while time.monotonic() - load_end < drain_timeout:
        progress = _progress(db)
        if progress.done(baseline, placed):
            drain_s = round(time.monotonic() - load_end, 2)
            break
        if time.monotonic() >= next_report:
            next_report += 5
            log(
                f"  draining {time.monotonic() - load_end:.0f}s: "
                f"{progress.confirmed - baseline.confirmed}/{placed} confirmed, "
                f"{progress.receipts - baseline.receipts} receipts, "
                f"{progress.emails - baseline.emails} confirmation emails"
            )
        time.sleep(0.1)
    cpu_after = _cpu_by_process(stack)
    done_at_timeout = None
    if drain_s is None:
        done_at_timeout = {
            "confirmed": progress.confirmed - baseline.confirmed,
            "receipts": progress.receipts - baseline.receipts,
            "emails": progress.emails - baseline.emails,
        }
    latencies = LatencySummary.of(result.latencies.get("create", []))
    return PipelineRound(
        rate=rate,
        seconds=seconds,
        placed=placed,
        failed=result.error_count,
        achieved_rate=round(placed / seconds, 1),
        create_p50_ms=round(latencies.p50, 1) if latencies.count else None,
        create_p99_ms=round(latencies.p99, 1) if latencies.count else None,
        drain_s=drain_s,
        waiting_at_load_end=waiting,
        done_at_timeout=done_at_timeout,
        cpu_ms_per_order={
            name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / max(placed, 1), 2)
            for name in sorted(cpu_after)
        },
    )
