"""A statement-level trigger on the outbox that wakes the relays on commit (PostgreSQL).

Revision ID: 0003
Revises: 0002
"""

from eventforge.runtime.messaging.schema import (
    create_outbox_notify_trigger_v1,
    drop_outbox_notify_trigger_v1,
)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_notify_trigger_v1("notifier_outbox")


def downgrade() -> None:
    drop_outbox_notify_trigger_v1()
