"""Wake a relay promptly on commit: LISTEN/NOTIFY on PostgreSQL, plain polling elsewhere.

Writers notify after their commit, from `RelayWaker`'s own connection, and not from inside
their transaction: PostgreSQL serialises the commits of every transaction that notified (a
cluster-wide lock held until its commit is flushed), which made concurrent CreateOrder calls
wait for each other's disk flush. The waker coalesces: however many commits come in while
one NOTIFY is under way, the next NOTIFY covers them all.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

log = logging.getLogger("eventforge.relay")

OUTBOX_CHANNELS = "eventforge.outbox_channels"
"""`Session.info` key: the channels to notify once the session's transaction commits."""


class Polling:
    """Waits the whole timeout (or until stopped)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def __call__(self, timeout: float) -> None:
        self.stop.wait(timeout)


class PostgresListener:
    """Waits until a NOTIFY on `channel` arrives or the timeout passes; reconnects after errors."""

    def __init__(self, conninfo: str, channel: str, stop: threading.Event) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.stop = stop
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def __call__(self, timeout: float) -> None:
        try:
            connection = self._connect()
            for _ in connection.notifies(timeout=timeout, stop_after=1):
                break
        except psycopg.Error as error:
            log.warning("LISTEN %s failed (%s); polling until it is back", self.channel, error)
            self.close()
            self.stop.wait(timeout)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            self._connection.execute(f'LISTEN "{self.channel}"')
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _conninfo(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def commit_waiter(
    engine: Engine, channel: str, stop: threading.Event
) -> Polling | PostgresListener:
    """The best way to wait for commits on this engine's database."""
    if engine.dialect.name != "postgresql":
        return Polling(stop)
    return PostgresListener(_conninfo(engine), channel, stop)


def notify_after_commit(session: Session, channel: str) -> None:
    """Have `channel` notified once `session`'s transaction commits (see `RelayWaker`)."""
    session.info.setdefault(OUTBOX_CHANNELS, set()).add(channel)


class RelayWaker:
    """Sends the NOTIFYs that sessions asked for (`notify_after_commit`) once they commit.

    Listens to a sessionmaker's `after_commit` and `after_rollback` (and asyncio units of work
    call `wake`). A thread sends them on a pooled connection of the engine, each in a
    transaction of its own: the first at once, then at most one per `interval` while commits
    keep coming, and ends when nothing is left to send. A NOTIFY that fails is logged and
    dropped: the relays also poll, so a lost wake-up delays events by at most a poll interval,
    and loses none.
    """

    def __init__(self, engine: Engine, interval: float = 0.02) -> None:
        self.engine = engine
        self.interval = interval
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._sending = False

    def after_commit(self, session: Session) -> None:
        channels = session.info.pop(OUTBOX_CHANNELS, None)
        if channels:
            self.wake(channels)

    def wake(self, channels: set[str]) -> None:
        """Notify `channels` soon (a transaction that recorded events has committed)."""
        with self._lock:
            self._pending |= channels
            if self._sending:
                return  # the running sender takes these with its next NOTIFY
            self._sending = True
        threading.Thread(target=self._send, name="relay-waker", daemon=True).start()

    def after_rollback(self, session: Session) -> None:
        session.info.pop(OUTBOX_CHANNELS, None)

    def _send(self) -> None:
        first = True
        while True:
            if not first:
                # The commits of the next few milliseconds share one NOTIFY: a relay that was
                # woken is busy publishing what they wrote anyway.
                time.sleep(self.interval)
            first = False
            with self._lock:
                channels, self._pending = self._pending, set()
                if not channels:
                    self._sending = False
                    return
            try:
                with self.engine.connect() as connection:
                    for channel in sorted(channels):
                        connection.exec_driver_sql(f'NOTIFY "{channel}"')
                    connection.commit()
            except SQLAlchemyError as error:
                log.warning("NOTIFY %s failed (%s); the relays poll", sorted(channels), error)
