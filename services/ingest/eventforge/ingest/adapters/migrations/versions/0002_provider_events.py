"""The provider events ingest recorded, keyed by (source, provider event id).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_events",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("provider_event_id", sa.String(128), primary_key=True),
        sa.Column("provider_event_type", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(128), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_provider_events_received_at", "provider_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("provider_events")
