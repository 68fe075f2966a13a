"""The files schema as SQLAlchemy Core tables (the migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

files = sa.Table(
    "files",
    metadata,
    sa.Column("file_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("declared_size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("bucket", sa.String(32), nullable=False),
    sa.Column("object_key", sa.String(512), nullable=False),
    sa.Column("notify_email", sa.String(254), nullable=False, server_default=""),
    sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("rejection_reason", sa.Text(), nullable=False, server_default=""),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("sha256", sa.String(64), nullable=False, server_default=""),
    sa.Column("detected_content_type", sa.String(100), nullable=False, server_default=""),
    sa.Column("image_width", sa.Integer(), nullable=True),
    sa.Column("image_height", sa.Integer(), nullable=True),
    sa.Column("page_count", sa.Integer(), nullable=True),
    sa.Column("order_id", sa.String(36), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("order_id", name="uq_files_receipt_order"),
    sa.Index("ix_files_status_upload_expiry", "status", "upload_expires_at"),
)

file_outputs = sa.Table(
    "file_outputs",
    metadata,
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
