"""`eventforge migrate --service-roles`: each service's schema, and all in it, owned by its own
login role, which cannot read another service's tables — on the local PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from eventforge.cli.stack import migrate_command
from eventforge.runtime.db import create_service_engine, database_role
from eventforge.runtime.migrations import current_revision, migrate
from eventforge.runtime.settings import SERVICES, ServiceName, Settings
from harness.workspace import create_database, drop_database, dsn
from tests.fixtures.database import ADMIN_URL

pytestmark = pytest.mark.integration

# Every owner of what a schema holds: the schema, its relations (tables, indexes, sequences,
# views), routines and types (row and array types of tables too).
OWNERS = """
SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %(schema)s
UNION SELECT pg_get_userbyid(c.relowner) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s
UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(schema)s
UNION SELECT pg_get_userbyid(t.typowner) FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %(schema)s
"""

MEMBERSHIPS = """
SELECT pg_has_role(%(role)s, 'rds_iam', 'MEMBER'),
       EXISTS (SELECT FROM pg_auth_members
               WHERE roleid = to_regrole(%(role)s) AND member = to_regrole(current_user))
"""


@dataclass(frozen=True)
class RolesDatabase:
    """A database of its own, and a role prefix no other test run uses (roles are global)."""

    url: str
    role_prefix: str

    def role(self, service: ServiceName) -> str:
        return database_role(service, self.role_prefix)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(dsn(self.url), autocommit=True, connect_timeout=5)

    def owners(self, schema: str) -> set[str]:
        with self.admin() as connection:
            rows = connection.execute(OWNERS, {"schema": schema}).fetchall()
        return {str(owner) for (owner,) in rows}

    def table_owners(self, schema: str) -> dict[str, str]:
        with self.admin() as connection:
            rows = connection.execute(
                "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchall()
        return {str(table): str(owner) for table, owner in rows}

    def settings(self, user: str | None = None) -> Settings:
        """Settings on this database, as the administrator or as `user` (trusted locally)."""
        url = make_url(self.url)
        if user is not None:
            url = url.set(username=user)
        return Settings(
            database_url=url.render_as_string(hide_password=False),
            database_role_prefix=self.role_prefix,
        )

    def migrate(self, *services: ServiceName) -> Result:
        """`eventforge migrate SERVICES --service-roles`, as the administrator."""
        return CliRunner().invoke(
            migrate_command,
            [*services, "--service-roles"],
            env={"DATABASE_URL": self.url, "EVENTFORGE_DATABASE_ROLE_PREFIX": self.role_prefix},
        )


@pytest.fixture
def roles_database() -> Iterator[RolesDatabase]:
    """The database is dropped first: the roles can go only once they own nothing."""
    name, url = create_database(ADMIN_URL, "roles")
    database = RolesDatabase(url, f"eventforge_t{uuid.uuid4().hex[:8]}")
    try:
        yield database
    finally:
        drop_database(name, ADMIN_URL)
        with psycopg.connect(dsn(ADMIN_URL), autocommit=True, connect_timeout=5) as admin:
            for service in SERVICES:
                admin.execute(f'DROP ROLE IF EXISTS "{database.role(service)}"'.encode())


def _write_and_read_own_tables(database: RolesDatabase, service: ServiceName) -> None:
    """As the service's role: insert into its inbox and read the row back."""
    engine = create_service_engine(database.settings(database.role(service)), service)
    event_id = str(uuid.uuid4())
    try:
        with engine.begin() as connection:
            assert connection.scalar(text("SELECT current_user")) == database.role(service)
            connection.execute(
                text(
                    "INSERT INTO inbox (event_id, handler, event_type, processed_at) "
                    "VALUES (:id, 'test', 'test.event', :now)"
                ),
                {"id": event_id, "now": datetime.now(UTC)},
            )
        with engine.connect() as connection:
            found = connection.scalar(
                text("SELECT count(*) FROM inbox WHERE event_id = :id"), {"id": event_id}
            )
            assert found == 1
    finally:
        engine.dispose()


def test_each_service_owns_its_schema_and_cannot_read_another(
    roles_database: RolesDatabase,
) -> None:
    result = roles_database.migrate("orders", "files")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["migrated orders", "migrated files"]
    orders_role, files_role = roles_database.role("orders"), roles_database.role("files")
    for service, role in (("orders", orders_role), ("files", files_role)):
        tables = roles_database.table_owners(service)
        assert {"alembic_version", "outbox", "inbox"} <= set(tables)
        assert set(tables.values()) == {role}
        assert roles_database.owners(service) == {role}

    _write_and_read_own_tables(roles_database, "orders")
    engine = create_service_engine(roles_database.settings(orders_role), "orders")
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM products")) > 0
        for table in ("files.outbox", "files.alembic_version"):
            with engine.connect() as connection, pytest.raises(ProgrammingError) as refused:
                connection.execute(text(f"SELECT * FROM {table}"))
            assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
            assert "permission denied for schema files" in str(refused.value)
    finally:
        engine.dispose()


def test_migrating_again_changes_nothing(roles_database: RolesDatabase) -> None:
    assert roles_database.migrate("orders").exit_code == 0
    engine = create_service_engine(roles_database.settings(), "orders")
    try:
        revision = current_revision(engine)
        result = roles_database.migrate("orders")
        assert result.exit_code == 0, result.output
        assert current_revision(engine) == revision is not None
    finally:
        engine.dispose()
    assert roles_database.owners("orders") == {roles_database.role("orders")}
    _write_and_read_own_tables(roles_database, "orders")


def test_a_schema_migrated_by_the_master_is_handed_over(roles_database: RolesDatabase) -> None:
    migrate(roles_database.settings(), "notifier")
    with roles_database.admin() as admin:
        # What an operator may have added by hand, beyond what the migrations create.
        admin.execute(
            "CREATE SEQUENCE notifier.ticket; CREATE TYPE notifier.mood AS ENUM ('ok');"
            "CREATE DOMAIN notifier.positive AS integer CHECK (VALUE > 0);"
            "CREATE TYPE notifier.pair AS (a integer, b integer);"
            "CREATE VIEW notifier.recent AS SELECT * FROM notifier.inbox;"
            "CREATE MATERIALIZED VIEW notifier.handled AS SELECT handler FROM notifier.inbox"
        )
        master = admin.execute("SELECT current_user").fetchone()
    assert master is not None
    assert roles_database.owners("notifier") == {master[0]}

    result = roles_database.migrate("notifier")
    assert result.exit_code == 0, result.output
    role = roles_database.role("notifier")
    assert roles_database.owners("notifier") == {role}
    assert roles_database.table_owners("notifier")["alembic_version"] == role
    _write_and_read_own_tables(roles_database, "notifier")


def test_the_role_may_log_in_with_iam_tokens_where_rds_iam_exists(
    roles_database: RolesDatabase,
) -> None:
    with roles_database.admin() as admin:
        created = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'").fetchone()
        if created is None:
            admin.execute("CREATE ROLE rds_iam")  # as on RDS; plain PostgreSQL has none
    try:
        assert roles_database.migrate("files").exit_code == 0
        with roles_database.admin() as admin:
            grants = admin.execute(MEMBERSHIPS, {"role": roles_database.role("files")}).fetchone()
        # A member of rds_iam; and the migrating user, granted the role, may act as it.
        assert grants == (True, True)
    finally:
        if created is None:
            with roles_database.admin() as admin:
                admin.execute("DROP ROLE rds_iam")


@pytest.mark.parametrize("url", [None, "sqlite:///roles.db"])
def test_service_roles_need_postgresql(url: str | None) -> None:
    env = {"DATABASE_URL": url, "EVENTFORGE_DATABASE_URL": None}
    result = CliRunner().invoke(migrate_command, ["--service-roles"], env=env)
    assert result.exit_code == 2
    assert "--service-roles needs PostgreSQL" in result.output
