"""Run a service's Alembic migrations against its own schema (PostgreSQL) or file (SQLite)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text

from eventforge.runtime.db import create_service_engine, database_role, ensure_schema, is_postgres
from eventforge.runtime.service_roles import hand_over_schema, set_local_role
from eventforge.runtime.settings import ServiceName, Settings


def alembic_config(service: ServiceName) -> Config:
    """Alembic configuration of a service; its scripts live in its adapters package."""
    config = Config()
    config.set_main_option("script_location", f"eventforge.{service}.adapters:migrations")
    return config


def upgrade(
    engine: Engine, service: ServiceName, revision: str = "head", *, role: str | None = None
) -> None:
    """Migrate one service's storage; concurrent callers on PostgreSQL wait for each other.

    With `role` (PostgreSQL only), the schema and everything in it end up owned by that role
    (created if missing), and the migrations run as it; else they belong to the connected user.
    """
    if role is not None and not is_postgres(engine):
        raise ValueError("service roles need PostgreSQL: set DATABASE_URL")
    config = alembic_config(service)
    with engine.begin() as connection:
        if is_postgres(engine):
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": service})
            _prepare_schema(connection, service, role)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _prepare_schema(connection: Connection, schema: str, role: str | None) -> None:
    """The schema the migrations run in, under the lock and in their transaction."""
    if role is None:
        ensure_schema(connection, schema)
        return
    hand_over_schema(connection, schema, role)
    set_local_role(connection, role)


def current_revision(engine: Engine) -> str | None:
    """The revision the storage is at, or None before the first migration."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(settings: Settings, service: ServiceName, *, service_roles: bool = False) -> None:
    """Bring a service's storage to the latest revision; with `service_roles`, owned by the
    service's own role (`database_role`), which the connected user creates if missing."""
    role = database_role(service, settings.database_role_prefix) if service_roles else None
    engine = create_service_engine(settings, service, pool_size=1)
    try:
        upgrade(engine, service, role=role)
    finally:
        engine.dispose()


def run_env() -> None:
    """Body of every service's Alembic env.py: migrate on the connection handed in."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
