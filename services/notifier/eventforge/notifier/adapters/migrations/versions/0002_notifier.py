"""Webhooks and their event types, deliveries with their attempts, email notifications.

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
        "webhooks",
        sa.Column("webhook_id", sa.String(36), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("description", sa.String(500), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        _timestamp("created_at"),
        _timestamp("deleted_at", nullable=True),
    )
    op.create_index("ix_webhooks_oldest", "webhooks", ["created_at", "webhook_id"])
    op.create_table(
        "webhook_event_types",
        sa.Column(
            "webhook_id", sa.String(36), sa.ForeignKey("webhooks.webhook_id"), primary_key=True
        ),
        sa.Column("event_type", sa.String(64), primary_key=True),
    )
    op.create_index("ix_webhook_event_types_event_type", "webhook_event_types", ["event_type"])
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(36), primary_key=True),
        sa.Column(
            "webhook_id", sa.String(36), sa.ForeignKey("webhooks.webhook_id"), nullable=False
        ),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _timestamp("next_attempt_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("webhook_id", "event_id", name="uq_deliveries_webhook_event"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_event", "deliveries", ["event_id"])
    op.create_index("ix_deliveries_newest", "deliveries", ["created_at", "delivery_id"])
    op.create_table(
        "delivery_attempts",
        sa.Column(
            "delivery_id",
            sa.String(36),
            sa.ForeignKey("deliveries.delivery_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt_number", sa.Integer(), primary_key=True),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        _timestamp("attempted_at"),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("provider_message_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        _timestamp("next_attempt_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("sent_at", nullable=True),
        sa.UniqueConstraint("event_id", "recipient", name="uq_notifications_event_recipient"),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_at"])
    op.create_index("ix_notifications_recipient", "notifications", ["recipient", "created_at"])
    op.create_index("ix_notifications_newest", "notifications", ["created_at", "notification_id"])


def downgrade() -> None:
    for name in (
        "notifications",
        "delivery_attempts",
        "deliveries",
        "webhook_event_types",
        "webhooks",
    ):
        op.drop_table(name)
