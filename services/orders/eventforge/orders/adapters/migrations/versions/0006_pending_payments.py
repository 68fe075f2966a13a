"""Payments confirmed out of band: an order's payment deadline, the local provider's states.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("payment_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_orders_payment_id", "orders", ["payment_id"])
    op.add_column(
        "payment_charges",
        sa.Column("status", sa.String(16), nullable=False, server_default="settled"),
    )
    op.add_column(
        "payment_charges", sa.Column("reason", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    op.drop_column("payment_charges", "reason")
    op.drop_column("payment_charges", "status")
    op.drop_index("ix_orders_payment_id", "orders")
    op.drop_column("orders", "payment_due_at")
