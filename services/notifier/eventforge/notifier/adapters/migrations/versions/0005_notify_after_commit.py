"""The relays are woken after commit by the writers' sessions, not by a trigger on the outbox.

A NOTIFY inside the writing transaction serialised every such commit, disk flush included.

Revision ID: 0005
Revises: 0004
"""

from eventforge.runtime.messaging.schema import (
    create_outbox_notify_trigger_v1,
    drop_outbox_notify_trigger_v1,
)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    drop_outbox_notify_trigger_v1()


def downgrade() -> None:
    create_outbox_notify_trigger_v1("notifier_outbox")
