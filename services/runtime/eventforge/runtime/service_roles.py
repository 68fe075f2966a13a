"""One PostgreSQL role per service, owning its schema and everything in it (`migrate
--service-roles`).

The privileged (master) user migrates: it creates the role, hands the schema over, and runs the
migrations as the role (`SET LOCAL ROLE`), so each table, sequence, function and Alembic's
version table belongs to the service. Nothing is granted to the role on any other schema, so a
service that logs in as its role cannot read another service's tables.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

RDS_IAM_ROLE = "rds_iam"
"""The RDS role whose members log in with IAM tokens; plain PostgreSQL has none."""

# Objects of the schema not already owned by the role, as (ALTER keyword, qualified name).
# Indexes, triggers, TOAST tables and the sequences behind serial and identity columns follow
# their table (ALTER SEQUENCE on those is refused), so they are left out.
_FOREIGN_OWNED = """
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
         WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE'
         ELSE 'TABLE' END,
       format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relowner <> to_regrole(:role)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
  AND NOT (c.relkind = 'S' AND EXISTS (
    SELECT FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT 'ROUTINE', p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = :schema AND p.proowner <> to_regrole(:role)
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
       format('%I.%I', n.nspname, t.typname)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = :schema AND t.typowner <> to_regrole(:role) AND t.typtype IN ('e', 'd')
"""


def hand_over_schema(connection: Connection, schema: str, role: str) -> None:
    """Make `role` (created if missing) the owner of `schema` and of what is already in it.

    Runs in the caller's transaction, as a user that may create roles (the RDS master user).
    """
    ensure_role(connection, role)
    _own_schema(connection, schema, role)
    _reassign_objects(connection, schema, role)


def ensure_role(connection: Connection, role: str) -> None:
    """Create the service's login role (no password) unless it exists; let the current user act
    as it; let it log in with IAM tokens on RDS."""
    quoted = _quote(connection, role)
    if not _role_exists(connection, role):
        connection.execute(text(f"CREATE ROLE {quoted} LOGIN"))
    if _role_exists(connection, RDS_IAM_ROLE):
        connection.execute(text(f"GRANT {RDS_IAM_ROLE} TO {quoted}"))
    # The RDS master is no superuser: it may create objects owned by the role, or SET ROLE to
    # it, only as a member (PostgreSQL 16 no longer makes the creator one it can SET ROLE as).
    connection.execute(text(f"GRANT {quoted} TO CURRENT_USER"))


def set_local_role(connection: Connection, role: str) -> None:
    """Act as `role` until the transaction ends: what is created from now on is the role's."""
    connection.execute(text(f"SET LOCAL ROLE {_quote(connection, role)}"))


def _own_schema(connection: Connection, schema: str, role: str) -> None:
    owner = connection.execute(
        text("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :schema"),
        {"schema": schema},
    ).scalar_one_or_none()
    quoted_schema, quoted_role = _quote(connection, schema), _quote(connection, role)
    if owner is None:
        connection.execute(text(f"CREATE SCHEMA {quoted_schema} AUTHORIZATION {quoted_role}"))
    elif owner != role:
        connection.execute(text(f"ALTER SCHEMA {quoted_schema} OWNER TO {quoted_role}"))


def _reassign_objects(connection: Connection, schema: str, role: str) -> None:
    """Hand over what a deployment migrated before it had service roles (owned by the master).

    Object by object in this schema only: REASSIGN OWNED would take the master's objects
    everywhere else too.
    """
    owned = connection.execute(text(_FOREIGN_OWNED), {"schema": schema, "role": role}).all()
    quoted_role = _quote(connection, role)
    for kind, name in owned:
        # The names come quoted from the catalogue (format %I, regprocedure); run as they are,
        # without bind-parameter parsing.
        connection.exec_driver_sql(f"ALTER {kind} {name} OWNER TO {quoted_role}")


def _role_exists(connection: Connection, role: str) -> bool:
    found = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role})
    return found.first() is not None


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote_identifier(name)
