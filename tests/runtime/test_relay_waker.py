"""The relay waker on PostgreSQL: the first commit's NOTIFY at once, a burst's coalesced."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, create_engine

from eventforge.runtime.messaging.wakeup import RelayWaker

pytestmark = pytest.mark.integration

CHANNEL = "waker_test_outbox"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    libpq_url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq_url, autocommit=True) as connection:
        connection.execute(f'LISTEN "{CHANNEL}"')
        yield connection


def notifications(listener: psycopg.Connection[tuple[object, ...]], seconds: float) -> list[float]:
    """When each NOTIFY arrived (monotonic time), over `seconds`."""
    arrived = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for _ in listener.notifies(timeout=left, stop_after=1):
            arrived.append(time.monotonic())
    return arrived


def test_a_lone_commit_wakes_the_relays_at_once(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    waker = RelayWaker(engine, interval=0.5)
    woken_at = time.monotonic()
    waker.wake({CHANNEL})
    [arrived] = notifications(listener, 0.3)
    assert arrived - woken_at < 0.2


def test_a_burst_of_commits_shares_its_notifies(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    waker = RelayWaker(engine, interval=0.2)
    for _ in range(200):
        waker.wake({CHANNEL})
        time.sleep(0.002)  # 200 commits over about 0.4 s
    arrived = notifications(listener, 1.0)
    # The first at once, then one per interval while commits keep coming (not one per commit).
    assert 2 <= len(arrived) <= 5, arrived
