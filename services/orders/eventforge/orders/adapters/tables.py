"""The orders schema as SQLAlchemy Core tables (the migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # While PAYMENT_PENDING: when the order stops waiting for the provider's confirmation.
    sa.Column("payment_due_at", sa.DateTime(timezone=True), nullable=True),
    # The W3C context (traceparent, baggage) of the request that placed it, as JSON: a saga
    # resumed later (a stalled order) continues it.
    sa.Column("cause", sa.Text(), nullable=False, server_default=""),
    sa.Index("ix_orders_customer_newest", "customer_id", "created_at", "order_id"),
    sa.Index("ix_orders_status_updated", "status", "updated_at"),
    sa.Index("ix_orders_payment_id", "payment_id"),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("order_id", sa.String(36), sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("line_no", sa.Integer(), primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("price_minor", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("stock", sa.Integer(), nullable=False),
    sa.CheckConstraint("price_minor > 0", name="ck_products_price_positive"),
    sa.CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("idempotency_key", sa.String(128), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The local payment provider's own books (a stand-in for an external gateway).
payment_charges = sa.Table(
    "payment_charges",
    metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("order_id", sa.String(36), nullable=False, index=True),
    sa.Column("amount_minor", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("token", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # settled, pending (confirmed or refused later, out of band) or failed (refused out of band).
    sa.Column("status", sa.String(16), nullable=False, server_default="settled"),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
)

payment_refunds = sa.Table(
    "payment_refunds",
    metadata,
    sa.Column("refund_id", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("payment_id", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

payment_attempts = sa.Table(
    "payment_attempts",
    metadata,
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
)
