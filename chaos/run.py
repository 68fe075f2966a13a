"""`make chaos`: the whole stack under steady load while its parts fail, then a reckoning.

1. set up (`harness.workspace`): a temp dir, a fresh PostgreSQL database with a random name,
   an AWS emulator on a free port; the stack (`chaos.stack`) — every service's api, worker and
   relay on free ports, reaching PostgreSQL through a TCP proxy the run controls; a webhook
   receiver on loopback registered with the notifier;
2. load (`chaos.load`) for `--duration` seconds: orders with mixed payment tokens (some
   cancelled), uploads through presigned POSTs; meanwhile the faults (`chaos.faults`): workers
   and relays killed and restarted, database backends terminated, the emulator paused, poison
   messages, one database outage watched through every API's health;
3. drain: wait (at most `--drain-timeout`) until every order is terminal, every outbox is
   published, every queue is empty, every upload settled, every email and webhook sent;
4. check (`chaos.collect`, `chaos.check`) and print the summary line last:
   `orders=N terminal=N lost=0 double_charges=0 duplicate_notifications=0 dlq_unexpected=0`.

Exit code 0 only when every counter is 0, every order is terminal, the drain finished, the
poison is all dead-lettered, the inventory adds up, every API went NOT_SERVING and back to
SERVING around the outage without a restart, and no process exited unless the run killed it.
"""

from __future__ import annotations

import argparse
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import make_url

from chaos import collect
from chaos.check import DELIVERED_EVENTS, Verdict, judge
from chaos.faults import KINDS, Faults, Plan
from chaos.load import OrderLoad, UploadLoad, call_with_retries
from chaos.proxy import TcpProxy
from chaos.receiver import WebhookReceiver
from chaos.stack import Stack
from eventforge.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from eventforge.runtime.emulator import EmulatorError
from harness.workspace import Workspace, admin_url, workspace

PROGRESS_SECONDS = 10.0


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():5.0f}s] {message}", flush=True)


@dataclass
class Outcome:
    verdict: Verdict | None = None
    failures: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m chaos", description=doc)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of load and faults")
    parser.add_argument("--rate", type=float, default=2.0, help="orders per second")
    parser.add_argument("--upload-every", type=float, default=2.0, help="seconds between uploads")
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, help="longest wait for the drain"
    )
    parser.add_argument(
        "--pause-seconds", type=float, default=20.0, help="how long the emulator is paused"
    )
    parser.add_argument(
        "--outage-seconds", type=float, default=5.0, help="how long the database is cut off"
    )
    parser.add_argument(
        "--faults",
        default=",".join(KINDS),
        help=f"comma-separated faults to inject (default: all of {', '.join(KINDS)})",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, spans)")
    args = parser.parse_args(argv)
    if not 5 <= args.duration <= 1800:
        parser.error("--duration must be 5..1800 seconds")
    if not 0.1 <= args.rate <= 50:
        parser.error("--rate must be 0.1..50 orders per second")
    if not 10 <= args.drain_timeout <= 900:
        parser.error("--drain-timeout must be 10..900 seconds")
    if args.upload_every < 0.2:
        parser.error("--upload-every must be at least 0.2 seconds")
    args.faults = frozenset(kind.strip() for kind in args.faults.split(",") if kind.strip())
    if args.faults - set(KINDS):
        parser.error(f"--faults: unknown {', '.join(sorted(args.faults - set(KINDS)))}")
    return args


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)  # noqa: S311
    clock = Clock()
    clock.say(
        f"chaos run: {args.duration:.0f}s of load at {args.rate:g} orders/s, "
        f"drain up to {args.drain_timeout:.0f}s, seed {seed}"
    )
    outcome = Outcome()
    # SIGTERM unwinds like Ctrl-C, so the stack, the emulator and the database are cleaned up
    # (the default action would leave every process of the run behind).
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        admin = admin_url("EVENTFORGE_CHAOS_POSTGRES")
        with workspace("chaos", admin=admin, keep=args.keep) as ws:
            _in_workspace(args, seed, clock, ws, outcome)
    except (psycopg.Error, EmulatorError, OSError) as error:
        outcome.failures.append(f"setting up or cleaning up: {type(error).__name__}: {error}")
    for line in outcome.report:
        print(line)
    for failure in outcome.failures:
        print(f"FAILED: {failure}")
    print(f"total {clock.elapsed():.0f}s")
    verdict = outcome.verdict
    if verdict is None:
        print(
            "orders=0 terminal=0 lost=? double_charges=? duplicate_notifications=? "
            "dlq_unexpected=? webhook_redeliveries=?"
        )
        return 1
    print(verdict.summary(), flush=True)
    return 0 if verdict.ok and not outcome.failures else 1


def _in_workspace(
    args: argparse.Namespace, seed: int, clock: Clock, ws: Workspace, outcome: Outcome
) -> None:
    clock.say(f"database {ws.database_name}, emulator {ws.emulator.url}, temp dir {ws.root}")
    proxy = TcpProxy(ws.database_host, ws.database_port)
    proxy.start()
    proxied = make_url(ws.database_url).set(host="127.0.0.1", port=proxy.port)
    receiver = WebhookReceiver(seed=seed)
    receiver.start()
    stack = Stack(
        root=ws.root,
        database_url=ws.database_url,
        proxied_database_url=proxied.render_as_string(hide_password=False),
        emulator=ws.emulator,
    )
    try:
        took = stack.start()
        clock.say(f"stack SERVING in {took:.1f}s ({len(stack.supervisor.children)} processes)")
        _run(args, seed, clock, ws, proxy, receiver, stack, outcome)
    except Exception as error:
        outcome.failures.append(f"the run itself failed: {type(error).__name__}: {error}")
        clock.say(outcome.failures[-1])
    finally:
        stack.stop()
        receiver.stop()
        proxy.close()


def _register_webhook(stack: Stack, receiver: WebhookReceiver) -> str:
    with grpc.insecure_channel(stack.address_of("notifier")) as channel:
        stub = notifier_pb2_grpc.NotifierServiceStub(channel)
        request = notifier_pb2.RegisterWebhookRequest(
            url=receiver.url, event_types=sorted(DELIVERED_EVENTS), description="chaos receiver"
        )
        reply = call_with_retries(lambda: stub.RegisterWebhook(request, timeout=5), Counter())
    if reply is None:
        raise RuntimeError("could not register the webhook")
    return reply.webhook.webhook_id


def _run(
    args: argparse.Namespace,
    seed: int,
    clock: Clock,
    ws: Workspace,
    proxy: TcpProxy,
    receiver: WebhookReceiver,
    stack: Stack,
    outcome: Outcome,
) -> None:
    webhook_id = _register_webhook(stack, receiver)
    clock.say(f"webhook registered: {receiver.url}")
    orders = OrderLoad(stack.address_of("orders"), rate=args.rate, seed=seed)
    uploads = UploadLoad(stack.address_of("files"), interval=args.upload_every, seed=seed + 1)
    faults = Faults(
        plan=Plan.for_duration(
            args.duration,
            kinds=args.faults,
            pause_seconds=args.pause_seconds,
            outage_seconds=args.outage_seconds,
        ),
        stack=stack,
        workspace=ws,
        proxy=proxy,
        seed=seed + 2,
        say=clock.say,
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=orders.run, args=(stop,), name="orders-load", daemon=True),
        threading.Thread(target=uploads.run, args=(stop,), name="uploads-load", daemon=True),
        threading.Thread(target=faults.run, args=(stop,), name="faults", daemon=True),
    ]
    load_started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        while (remaining := args.duration - (time.monotonic() - load_started)) > 0:
            stop.wait(min(PROGRESS_SECONDS, remaining))
            if time.monotonic() - load_started < args.duration:
                clock.say(_progress(orders, uploads, faults))
    finally:
        stop.set()
        for thread in threads:
            thread.join(args.pause_seconds + 90)
        faults.finish()
    load_seconds = time.monotonic() - load_started
    clock.say("load stopped; " + _progress(orders, uploads, faults))
    if not stack.wait_all_running():
        outcome.failures.append("a killed process was not running again after 30 s")

    accepted_orders = [o.order_id for o in orders.stats.accepted]
    accepted_uploads = [u.file_id for u in uploads.stats.accepted]
    queues = collect.Queues(stack.settings)
    drain_started = time.monotonic()
    drained = _drain(args.drain_timeout, clock, ws, queues, accepted_orders, accepted_uploads)
    drain_seconds = time.monotonic() - drain_started
    if not drained:
        outcome.failures.append(f"not drained within {args.drain_timeout:.0f}s")

    with ws.connect() as connection:
        observed = collect.observe(
            connection=connection,
            notifier_address=stack.address_of("notifier"),
            webhook_id=webhook_id,
            emulator=ws.emulator,
            queues=queues,
            accepted_orders=accepted_orders,
            accepted_uploads=accepted_uploads,
            webhook_received=[(r.event_id, r.path) for r in receiver.snapshot()],
            poison_markers=set(faults.log.poison_markers),
        )
        statuses = Counter(observed.orders.get(o, "MISSING") for o in accepted_orders)
        inventory = _inventory_problems(connection)
    verdict = judge(observed)
    outcome.verdict = verdict
    report = outcome.report
    log = faults.log
    killed = ", ".join(f"{name} {n}" for name, n in sorted(log.killed.items()))
    report.append(
        f"faults: {log.describe()} (killed: {killed or 'none'}; "
        f"backends terminated: {log.backends_terminated})"
    )
    for watch in log.health:
        report.append(f"db outage health: {watch.describe()}")
        if not watch.ok:
            outcome.failures.append(f"health around the outage: {watch.describe()}")
    if (
        faults.plan.outage_at is not None
        and faults.plan.outage_at < args.duration
        and not log.health
    ):
        outcome.failures.append("the database outage did not happen")
    for error in log.errors:
        outcome.failures.append(f"fault injection: {error}")
    api_restarts = {n: c for n, c in stack.exits.restarts.items() if n.endswith("-api")}
    restarts = ", ".join(f"{n} {c}" for n, c in sorted(stack.exits.restarts.items()))
    report.append(
        f"processes: restarts {restarts or 'none'}; unexpected exits {len(stack.exits.unexpected)}"
    )
    for exit_ in stack.exits.unexpected:
        outcome.failures.append(f"unexpected exit: {exit_}")
    if api_restarts:
        outcome.failures.append(f"APIs restarted: {api_restarts}")
    stats = orders.stats
    report.append(
        f"orders: attempted {stats.attempted}, accepted {len(stats.accepted)}, not accepted "
        f"{stats.not_accepted}; statuses {dict(sorted(statuses.items()))}; "
        f"cancels {dict(stats.cancels)}; client errors {dict(stats.errors)}"
    )
    kinds = Counter(u.kind for u in uploads.stats.accepted)
    settled = Counter(observed.uploads.values())
    report.append(
        f"uploads: attempted {uploads.stats.attempted}, accepted {len(accepted_uploads)} "
        f"{dict(kinds)}; now {dict(settled)}; client failures {dict(uploads.stats.failed)}"
    )
    sent = Counter(e.status for e in observed.emails)
    delivered = Counter(d.status for d in observed.deliveries)
    ses = "unknown" if observed.ses_sent is None else str(len(observed.ses_sent))
    report.append(
        f"notifications: emails {dict(sent)} (SES accepted {ses}); webhook deliveries "
        f"{dict(delivered)}; receiver acknowledged {len(observed.webhook_received)}, "
        f"refused {receiver.refused}"
    )
    outcomes = collect.email_outcomes(stack.logs)
    report.append(
        "emails whose send outcome was unknown (notifier logs): "
        f"{dict(sorted(outcomes.items())) or 'none'}"
    )
    report.append(
        f"dlq: poison dead-lettered {verdict.poison_dead_lettered}/{len(log.poison_markers)}, "
        f"dead letters {len(observed.dead_letters)}"
    )
    if verdict.poison_dead_lettered != len(log.poison_markers):
        outcome.failures.append("not every poison message reached a DLQ")
    report.append(f"inventory: {'; '.join(inventory) or 'consistent'}")
    if inventory:
        outcome.failures.append("inventory does not add up")
    for counter, lines in verdict.details.items():
        for line in lines:
            report.append(f"{counter}: {line}")
    report.append(
        f"durations: load {load_seconds:.0f}s, drain {drain_seconds:.0f}s"
        f"{'' if drained else ' (gave up)'}"
    )


def _progress(orders: OrderLoad, uploads: UploadLoad, faults: Faults) -> str:
    stats = orders.stats
    return (
        f"orders accepted {len(stats.accepted)} (not accepted {stats.not_accepted}), "
        f"uploads {len(uploads.stats.accepted)}; faults: {faults.log.describe()}"
    )


def _drain(
    timeout: float,
    clock: Clock,
    ws: Workspace,
    queues: collect.Queues,
    accepted_orders: list[str],
    accepted_uploads: list[str],
) -> bool:
    """Wait until nothing is left in motion (twice in a row); False on timeout."""
    deadline = time.monotonic() + timeout
    next_report = 0.0
    quiet = 0
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            with ws.connect() as connection:
                left = collect.backlog(connection, queues, accepted_orders, accepted_uploads)
        except (psycopg.Error, BotoCoreError, ClientError) as error:
            left = {f"unreadable ({type(error).__name__})": 1}
        busy = {name: n for name, n in left.items() if n}
        quiet = 0 if busy else quiet + 1
        if quiet >= 2:
            clock.say("drained")
            return True
        if time.monotonic() >= next_report:
            clock.say("drain: " + (", ".join(f"{k} {v}" for k, v in busy.items()) or "quiet"))
            next_report = time.monotonic() + PROGRESS_SECONDS
        time.sleep(1.0)
    clock.say("drain gave up: " + ", ".join(f"{k} {v}" for k, v in left.items() if v))
    return False


def _inventory_problems(connection: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    """Stock must equal the seeded stock minus what unreleased reservations hold, per SKU.

    The seed is what the migration inserted: today's stock plus what is held. A double
    reservation or a double release shows as a reservation of a settled order still held, or
    as a released reservation of a confirmed order.
    """
    problems = []
    rows = connection.execute(
        "SELECT o.order_id, o.status, count(r.order_id),"
        " count(r.order_id) FILTER (WHERE r.released_at IS NULL)"
        " FROM orders.orders o LEFT JOIN orders.reservations r ON r.order_id = o.order_id"
        " GROUP BY o.order_id, o.status"
    ).fetchall()
    for order_id, status, lines, held in rows:
        if status in ("FAILED", "CANCELLED") and held:
            problems.append(f"{status} order {order_id} still holds {held} reservations")
        if status == "CONFIRMED" and (not lines or held != lines):
            problems.append(f"CONFIRMED order {order_id} holds {held} of {lines} reservations")
    stock = connection.execute(
        "SELECT p.sku, p.stock, coalesce(sum(r.quantity) FILTER (WHERE r.released_at IS NULL), 0)"
        " FROM orders.products p LEFT JOIN orders.reservations r ON r.sku = p.sku"
        " GROUP BY p.sku, p.stock"
    ).fetchall()
    seeded = {
        "SKU-BOOK-001": 1_000_000,
        "SKU-MUG-001": 1_000_000,
        "SKU-SHIRT-001": 1_000_000,
        "SKU-STICKER-001": 1_000_000,
        "SKU-LIMITED-001": 3,
    }
    for sku, now, held in stock:
        if sku in seeded and int(now) + int(held) != seeded[sku]:
            problems.append(f"{sku}: stock {now} + held {held} != seeded {seeded[sku]}")
    return problems[:10]
