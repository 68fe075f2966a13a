"""Every service migrates from empty on PostgreSQL and on SQLite, into its own schema or file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from eventforge.runtime.db import create_service_engine
from eventforge.runtime.migrations import current_revision, upgrade
from eventforge.runtime.settings import ALL_SERVICES, ServiceName, Settings

EXPECTED_TABLES = {"alembic_version", "outbox", "inbox"}


@pytest.mark.integration
@pytest.mark.parametrize("service", ALL_SERVICES)
def test_postgres_from_empty_into_the_service_schema(
    database_url: str, service: ServiceName
) -> None:
    engine = create_service_engine(Settings(database_url=database_url), service)
    try:
        upgrade(engine, service)
        upgrade(engine, service)  # idempotent
        assert current_revision(engine) is not None
        tables = set(inspect(engine).get_table_names(schema=service))
        assert tables >= EXPECTED_TABLES
        assert not EXPECTED_TABLES & set(inspect(engine).get_table_names(schema="public"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_sqlite_from_empty_into_one_file_per_service(tmp_path: Path, service: ServiceName) -> None:
    engine = create_service_engine(Settings(data_dir=tmp_path), service)
    try:
        upgrade(engine, service)
        assert (tmp_path / f"{service}.db").exists()
        assert current_revision(engine) is not None
        assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
    finally:
        engine.dispose()
