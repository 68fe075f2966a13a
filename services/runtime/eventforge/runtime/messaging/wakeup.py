"""Wake a relay promptly on commit: LISTEN/NOTIFY on PostgreSQL, plain polling elsewhere."""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy import Engine

from eventforge.runtime.db import is_postgres

log = logging.getLogger("eventforge.relay")


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


def commit_waiter(
    engine: Engine, channel: str, stop: threading.Event
) -> Polling | PostgresListener:
    """The best way to wait for commits on this engine's database."""
    if not is_postgres(engine):
        return Polling(stop)
    url = engine.url.set(drivername="postgresql")
    return PostgresListener(url.render_as_string(hide_password=False), channel, stop)
