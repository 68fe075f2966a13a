"""Run a service's Alembic migrations against its own schema (PostgreSQL) or file (SQLite)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from eventforge.runtime.db import create_service_engine, ensure_schema, is_postgres
from eventforge.runtime.settings import ServiceName, Settings


def alembic_config(service: ServiceName) -> Config:
    """Alembic configuration of a service; its scripts live in its adapters package."""
    config = Config()
    config.set_main_option("script_location", f"eventforge.{service}.adapters:migrations")
    return config


def upgrade(engine: Engine, service: ServiceName, revision: str = "head") -> None:
    """Migrate one service's storage; concurrent callers on PostgreSQL wait for each other."""
    ensure_schema(engine, service)
    config = alembic_config(service)
    with engine.begin() as connection:
        if is_postgres(engine):
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": service})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the storage is at, or None before the first migration."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(settings: Settings, service: ServiceName) -> None:
    """Bring a service's storage to the latest revision."""
    engine = create_service_engine(settings, service, pool_size=1)
    try:
        upgrade(engine, service)
    finally:
        engine.dispose()


def run_env() -> None:
    """Body of every service's Alembic env.py: migrate on the connection handed in."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
