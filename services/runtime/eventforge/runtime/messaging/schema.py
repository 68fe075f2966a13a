"""Outbox and inbox tables every service keeps in its own schema (migration helpers included)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

# SQLite only autoincrements INTEGER PRIMARY KEY columns.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _outbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]


def _inbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("handler", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    ]


def define_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The outbox and inbox tables on `metadata`, as the v1 migration creates them."""
    outbox = sa.Table("outbox", metadata, *_outbox_columns())
    sa.Index(
        "ix_outbox_unpublished",
        outbox.c.id,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    sa.Index("ix_outbox_published_at", outbox.c.published_at)
    inbox = sa.Table("inbox", metadata, *_inbox_columns())
    sa.Index("ix_inbox_processed_at", inbox.c.processed_at)
    return outbox, inbox


metadata = sa.MetaData()
outbox_table, inbox_table = define_tables(metadata)


def create_messaging_tables_v1() -> None:
    """Migration step: create the v1 outbox and inbox tables (frozen; never edit)."""
    from alembic import op  # only migrations need alembic, whose import costs every process

    op.create_table("outbox", *_outbox_columns())
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_table("inbox", *_inbox_columns())
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])


def drop_messaging_tables_v1() -> None:
    """Migration step: undo `create_messaging_tables_v1`."""
    from alembic import op

    op.drop_table("inbox")
    op.drop_table("outbox")


def create_outbox_notify_trigger_v1(channel: str) -> None:
    """Migration step (PostgreSQL only): NOTIFY `channel` when a transaction that inserted outbox
    rows commits, from a statement-level trigger (frozen; never edit).

    The relays LISTEN on the channel. A trigger instead of a `pg_notify` call from the writer
    saves every outbox write a round trip, and wakes the relays whoever writes the row.
    """
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        return  # elsewhere the relays poll
    op.execute(
        "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def drop_outbox_notify_trigger_v1() -> None:
    """Migration step: undo `create_outbox_notify_trigger_v1`."""
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
