"""Database engines: one schema per service on PostgreSQL, one SQLite file per service locally."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sql_errors
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from eventforge.runtime.db_auth import connect_with, credential_source
from eventforge.runtime.messaging.wakeup import RelayWaker
from eventforge.runtime.settings import DEFAULT_DATABASE_ROLE_PREFIX, ServiceName, Settings
from eventforge.runtime.telemetry import instrument_engine

log = logging.getLogger("eventforge.db")
T = TypeVar("T")

RECORD_RETRY_SECONDS = 30.0
"""How long `retry_while_unavailable` keeps trying: shorter than the notifier's claims (leases)."""


def database_url(settings: Settings, service: ServiceName) -> URL:
    """The service's database: PostgreSQL (psycopg 3) when configured, else a SQLite file."""
    if settings.database_url:
        url = make_url(settings.database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url
    return make_url(f"sqlite:///{settings.data_dir / f'{service}.db'}")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def database_role(service: ServiceName, prefix: str = DEFAULT_DATABASE_ROLE_PREFIX) -> str:
    """The PostgreSQL role a service logs in as, owner of its schema (`migrate --service-roles`).

    `prefix` is the settings' DATABASE_ROLE_PREFIX; deployments keep the default.
    """
    return f"{prefix}_{service}"


def create_service_engine(
    settings: Settings,
    service: ServiceName,
    pool_size: int | None = None,
    *,
    pre_ping: bool = True,
) -> Engine:
    """An engine whose unqualified table names resolve in the service's own schema.

    The pool keeps as many connections as the API has handler threads (GRPC_MAX_WORKERS) by
    default: a smaller pool closes and reopens connections under load, and every new
    PostgreSQL connection is a new server process. Each new connection logs in as
    DATABASE_AUTH says (`eventforge.runtime.db_auth`). `pre_ping` tests a connection with a
    round trip before each use; APIs go without (a connection the server dropped fails its call
    with UNAVAILABLE and invalidates the pool, and idempotency keys make the retry safe).
    With TRACE_SQL set, every statement is a span.
    """
    url = database_url(settings, service)
    if url.get_backend_name() == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        _trace_statements(settings, engine)
        return engine
    engine = create_engine(
        url,
        pool_size=settings.grpc_max_workers if pool_size is None else pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={"options": f"-c search_path={service}", "connect_timeout": 5},
    )
    source = credential_source(settings, url)
    if source is not None:
        event.listen(engine, "do_connect", connect_with(source))
    _trace_statements(settings, engine)
    return engine


def create_async_service_engine(
    settings: Settings, service: ServiceName, pool_size: int | None = None
) -> AsyncEngine:
    """An asyncio engine of the service's database (an API's hot paths): the same URL, login,
    schema and statement tracing as `create_service_engine`, without pre-ping (see there).

    psycopg 3 in its asyncio mode on PostgreSQL, aiosqlite on SQLite.
    """
    url = database_url(settings, service)
    if url.get_backend_name() == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url.set(drivername="sqlite+aiosqlite"), connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url,
            pool_size=settings.grpc_max_workers if pool_size is None else pool_size,
            pool_recycle=1800,
            connect_args={"options": f"-c search_path={service}", "connect_timeout": 5},
        )
        source = credential_source(settings, url)
        if source is not None:
            event.listen(engine.sync_engine, "do_connect", connect_with(source))
    _trace_statements(settings, engine.sync_engine)
    return engine


def _trace_statements(settings: Settings, engine: Engine) -> None:
    if settings.trace_sql:
        instrument_engine(engine)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def ensure_schema(connection: Connection, schema: str) -> None:
    """Create the service's schema on PostgreSQL, owned by the connected user."""
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query (untraced: health probes are noise)."""
    try:
        with suppress_instrumentation(), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return False
    return True


def database_unavailable(error: BaseException) -> bool:
    """Whether an error means the database is unreachable for now (retrying may succeed).

    Refused or dropped connections (an outage, a restart, a terminated backend) and an
    exhausted pool are; constraint violations, bad SQL and the like are not.
    """
    if isinstance(error, sql_errors.DBAPIError):
        return error.connection_invalidated or isinstance(error, sql_errors.OperationalError)
    return isinstance(error, sql_errors.TimeoutError)


def retry_while_unavailable(
    work: Callable[[], T],
    *,
    what: str,
    give_up_after: float = RECORD_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`work()`, retried with backoff while the database is unavailable, for at most
    `give_up_after` seconds; other errors, and the last one, propagate.

    For recording what already happened outside the database (an email the provider accepted, a
    webhook the endpoint acknowledged): giving up leaves it to be done again once its claim
    runs out, so a short outage or a terminated connection must not end the attempt. `work`
    must be safe to repeat (a commit whose acknowledgement was lost is repeated too).
    """
    deadline = clock() + give_up_after
    delay = 0.2
    while True:
        try:
            return work()
        except Exception as error:
            if not database_unavailable(error) or clock() + delay > deadline:
                raise
            log.warning(
                "recording %s: database unavailable (%s); retrying in %.1fs", what, error, delay
            )
        sleep(delay)
        delay = min(delay * 2, 5.0)


def relay_waker(engine: Engine) -> RelayWaker | None:
    """What wakes the relays after a commit that recorded events: a NOTIFY on PostgreSQL;
    nothing on SQLite, where relays poll."""
    return RelayWaker(engine) if is_postgres(engine) else None


def session_factory(engine: Engine, waker: RelayWaker | None = None) -> sessionmaker[Session]:
    """Sessions of `engine`; on PostgreSQL, their commits wake the relays they ask to wake
    (`messaging.wakeup.notify_after_commit`, which `record_event` does), through `waker` (by
    default one of their own)."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    waker = waker or relay_waker(engine)
    if waker is not None:
        event.listen(sessions, "after_commit", waker.after_commit)
        event.listen(sessions, "after_rollback", waker.after_rollback)
    return sessions
