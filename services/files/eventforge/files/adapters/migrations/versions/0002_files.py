"""Files and their outputs: uploads with their processing status, and order receipts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("file_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("declared_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("bucket", sa.String(32), nullable=False),
        sa.Column("object_key", sa.String(512), nullable=False),
        sa.Column("notify_email", sa.String(254), nullable=False, server_default=""),
        _timestamp("upload_expires_at", nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("detected_content_type", sa.String(100), nullable=False, server_default=""),
        sa.Column("image_width", sa.Integer(), nullable=True),
        sa.Column("image_height", sa.Integer(), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=True),
        # Set on receipts only; unique so an order never gets two.
        sa.Column("order_id", sa.String(36), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("order_id", name="uq_files_receipt_order"),
    )
    op.create_index("ix_files_status_upload_expiry", "files", ["status", "upload_expires_at"])
    op.create_table(
        "file_outputs",
        sa.Column(
            "file_id",
            sa.String(36),
            sa.ForeignKey("files.file_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("variant", sa.String(32), primary_key=True),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.String(32), nullable=False),
        sa.Column("object_key", sa.String(512), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_outputs")
    op.drop_index("ix_files_status_upload_expiry", table_name="files")
    op.drop_table("files")
