"""Deliveries and emails keep the trace context of the event that caused them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("deliveries", "notifications")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("cause", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "cause")
