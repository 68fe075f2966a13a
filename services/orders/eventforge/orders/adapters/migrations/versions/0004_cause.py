"""Orders keep the trace context of the request that placed them (a resumed saga continues it).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("cause", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("orders", "cause")
