"""The notifier schema as SQLAlchemy Core tables (the migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("webhook_id", sa.String(36), primary_key=True),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_webhooks_oldest", "created_at", "webhook_id"),
)

webhook_event_types = sa.Table(
    "webhook_event_types",
    metadata,
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.webhook_id"), primary_key=True),
    sa.Column("event_type", sa.String(64), primary_key=True),
    sa.Index("ix_webhook_event_types_event_type", "event_type"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(36), primary_key=True),
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.webhook_id"), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The W3C context (traceparent, tracestate, baggage) of the event that caused it, as JSON.
    sa.Column("cause", sa.Text(), nullable=False, server_default=""),
    sa.UniqueConstraint("webhook_id", "event_id", name="uq_deliveries_webhook_event"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_event", "event_id"),
    sa.Index("ix_deliveries_newest", "created_at", "delivery_id"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
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
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
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
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("cause", sa.Text(), nullable=False, server_default=""),
    sa.UniqueConstraint("event_id", "recipient", name="uq_notifications_event_recipient"),
    sa.Index("ix_notifications_due", "status", "next_attempt_at"),
    sa.Index("ix_notifications_recipient", "recipient", "created_at"),
    sa.Index("ix_notifications_newest", "created_at", "notification_id"),
)
