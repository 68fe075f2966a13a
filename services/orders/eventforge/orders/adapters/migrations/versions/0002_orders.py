"""Orders, lines, catalogue with stock, reservations, idempotency keys, local payments.

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

# A demo catalogue for local use; stock is large except for the deliberately scarce item.
CATALOGUE = [
    ("SKU-BOOK-001", "Field guide to event-driven systems", 2500, 1_000_000),
    ("SKU-MUG-001", "EventForge mug", 1299, 1_000_000),
    ("SKU-SHIRT-001", "EventForge T-shirt", 1999, 1_000_000),
    ("SKU-STICKER-001", "Sticker pack", 350, 1_000_000),
    ("SKU-LIMITED-001", "Signed first edition (limited)", 9900, 3),
]


def _timestamp(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_token", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("failed_step", sa.String(32), nullable=False, server_default=""),
        sa.Column("reserved", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("payment_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("refunded", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
    )
    op.create_index(
        "ix_orders_customer_newest", "orders", ["customer_id", "created_at", "order_id"]
    )
    op.create_index("ix_orders_status_updated", "orders", ["status", "updated_at"])
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.String(36), sa.ForeignKey("orders.order_id"), primary_key=True),
        sa.Column("line_no", sa.Integer(), primary_key=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
    )
    products = op.create_table(
        "products",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.CheckConstraint("price_minor > 0", name="ck_products_price_positive"),
        sa.CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
    )
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _timestamp("reserved_at"),
        _timestamp("released_at", nullable=True),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "payment_charges",
        sa.Column("payment_id", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("order_id", sa.String(36), nullable=False, index=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "payment_refunds",
        sa.Column("refund_id", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("payment_id", sa.String(64), nullable=False, unique=True),
        _timestamp("created_at"),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    op.bulk_insert(
        products,
        [
            {"sku": sku, "name": name, "price_minor": price, "currency": "USD", "stock": stock}
            for sku, name, price, stock in CATALOGUE
        ],
    )


def downgrade() -> None:
    for name in (
        "payment_attempts",
        "payment_refunds",
        "payment_charges",
        "idempotency_keys",
        "reservations",
        "products",
        "order_lines",
        "orders",
    ):
        op.drop_table(name)
