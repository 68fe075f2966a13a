"""The ingest schema as SQLAlchemy Core tables (the migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

provider_events = sa.Table(
    "provider_events",
    metadata,
    # A provider's redelivery of an event carries the same id: the key refuses a second row.
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("provider_event_id", sa.String(128), primary_key=True),
    sa.Column("provider_event_type", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.String(128), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Index("ix_provider_events_received_at", "received_at"),
)
"""One row per provider event recorded: the key of deduplication, kept INGEST_RETENTION_DAYS."""
