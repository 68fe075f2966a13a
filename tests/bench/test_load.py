"""The load generator: its parts, a run against the no-op server, and one against orders."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from bench.noop_server import serve
from eventforge.cli import main
from eventforge.cli.load import (
    LatencySummary,
    LoadError,
    LoadSpec,
    _RunningQuantiles,
    check_loopback,
    histogram,
    parse_mix,
    percentile,
    render_histogram,
    run_load,
)
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.emulator import free_port
from eventforge.runtime.migrations import migrate
from eventforge.runtime.settings import Settings
from harness.workspace import create_database, drop_database
from tests.fixtures.database import ADMIN_URL
from tests.fixtures.services import StartService


@pytest.fixture(scope="module")
def noop() -> Iterator[str]:
    server, port = serve(workers=4)
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_parse_mix_weighs_operations_and_rejects_nonsense() -> None:
    assert parse_mix("create=8,get=1,list=1") == {"create": 8, "get": 1, "list": 1}
    assert parse_mix("create") == {"create": 1}
    assert parse_mix(" create=2 , list=0 ") == {"create": 2}
    for bad in ("delete=1", "create=x", "create=-1", "get=0", ""):
        with pytest.raises(LoadError):
            parse_mix(bad)


def test_only_loopback_targets_are_accepted() -> None:
    check_loopback("127.0.0.1:50051")
    check_loopback("localhost:50051")
    check_loopback("[::1]:50051")
    for bad in ("192.0.2.10:50051", "127.0.0.1", "127.0.0.1:port"):
        with pytest.raises(LoadError):
            check_loopback(bad)


def test_spec_bounds_the_run() -> None:
    with pytest.raises(LoadError):
        LoadSpec("127.0.0.1:1", duration=0)
    with pytest.raises(LoadError):
        LoadSpec("127.0.0.1:1", duration=7200)
    with pytest.raises(LoadError):
        LoadSpec("127.0.0.1:1", concurrency=0)
    with pytest.raises(LoadError):
        LoadSpec("127.0.0.1:1", duration=2, warmup=2)
    with pytest.raises(LoadError):
        LoadSpec("127.0.0.1:1", concurrency=2, connections=3)


def test_percentiles_summary_and_histogram() -> None:
    values = [n / 1000 for n in range(1, 101)]  # 1..100 ms
    assert percentile(values, 0.5) == 0.05
    assert percentile(values, 0.99) == 0.099
    assert math.isnan(percentile([], 0.5))
    summary = LatencySummary.of(values)
    assert (summary.count, summary.p50, summary.p99, summary.max) == (100, 50.0, 99.0, 100.0)
    assert LatencySummary.of([]).as_dict()["p50"] is None
    buckets = histogram(values)
    assert sum(count for _, count in buckets) == 100
    assert dict(buckets)[1] == 1
    assert dict(buckets)[100] == 25
    assert buckets[-1] == (math.inf, 0)
    text = render_histogram(buckets)
    assert "<= 100" in text
    assert "#" in text
    quantiles = _RunningQuantiles()
    quantiles.add(values)
    assert quantiles.quantile(0.5) == pytest.approx(0.05, rel=0.03)


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_closed_loop_against_the_noop_server(noop: str, client: str) -> None:
    result = run_load(LoadSpec(noop, concurrency=4, duration=0.6, warmup=0.1, client=client))  # type: ignore[arg-type]
    assert result.error_count == 0
    assert result.ok > 50
    assert result.qps == pytest.approx(result.ok / 0.5)
    summary = result.summary()
    assert summary["latency_ms"]["p50"] > 0
    assert summary["by_operation"]["create"]["ok"] == result.ok
    assert "latency (ms)" in result.report()


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_rate_mode_keeps_the_rate(noop: str, client: str) -> None:
    spec = LoadSpec(noop, rate=200, duration=0.5, client=client, mix={"create": 1, "list": 1})  # type: ignore[arg-type]
    result = run_load(spec)
    assert result.error_count == 0
    assert 90 <= result.requests <= 101
    assert set(result.latencies) == {"create", "list"}


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_calls_spread_over_connections_and_reads_alone_place_their_orders(client: str) -> None:
    peers: set[str] = set()

    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        peers.add(context.peer())
        return b""

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(answer)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "eventforge.orders.v1.OrdersService", {"CreateOrder": handler, "GetOrder": handler}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        spec = LoadSpec(
            f"127.0.0.1:{port}",
            concurrency=4,
            connections=3,
            duration=0.5,
            mix={"get": 1},
            client=client,  # type: ignore[arg-type]
        )
        result = run_load(spec)
    finally:
        server.stop(grace=None)
    assert result.error_count == 0
    assert set(result.latencies) == {"get"}
    assert len(peers) == 3  # one client port per connection


def test_errors_are_counted_by_code() -> None:
    result = run_load(
        LoadSpec(f"127.0.0.1:{free_port()}", concurrency=2, duration=0.3, timeout=0.2)
    )
    assert result.ok == 0
    assert result.error_count > 0
    assert all(key.startswith("create:") for key in result.errors)


@pytest.fixture
def own_orders(stack_settings: Settings) -> Iterator[Settings]:
    """The stack's settings on a database of their own, orders migrated: the hundreds of orders
    a load run places (and their unpublished events) must not become other tests' backlog."""
    name, url = create_database(ADMIN_URL, "load")
    settings = stack_settings.model_copy(update={"database_url": url})
    try:
        migrate(settings, "orders")
        yield settings
    finally:
        drop_database(name, ADMIN_URL)


@pytest.mark.integration
def test_two_seconds_against_the_orders_api(
    start_service: StartService, own_orders: Settings
) -> None:
    stack_settings = own_orders
    api = start_service("orders", "api", settings=own_orders)
    api.wait_serving()
    outcome = CliRunner().invoke(
        main,
        [
            "load",
            "--target",
            api.address,
            "--duration",
            "2",
            "--concurrency",
            "4",
            "--mix",
            "create=8,get=1,list=1",
            "--json",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["errors"] == 0, summary["errors_by_code"]
    assert summary["qps"] > 0
    assert set(summary["by_operation"]) == {"create", "get", "list"}
    assert summary["by_operation"]["create"]["ok"] > 0
    assert "latency (ms)" in outcome.stderr
    assert "calls" in outcome.stderr
    engine = create_service_engine(stack_settings, "orders")
    try:
        with engine.connect() as connection:
            placed = connection.execute(
                sa.text("SELECT count(*) FROM orders WHERE customer_id LIKE 'load-%'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert placed >= summary["by_operation"]["create"]["ok"]
