"""Issue 10: the Subscriptions of the API's clients (subscriptions) and their numbered event notifications
(subscription_notifications).

Revision ID: 0008_subscriptions
Revises: 0007_attendance_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_subscriptions"
down_revision: str | None = "0007_attendance_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(500), nullable=False),
        sa.Column("trigger", sa.String(40), nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("endpoint", sa.String(2000), nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer),
        sa.Column("timeout_seconds", sa.Integer),
        sa.Column("max_count", sa.Integer),
        sa.Column("secret", sa.Text),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("cursor", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_subscriptions_recipient", "subscriptions", ["recipient", "status"])
    op.create_table(
        "subscription_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("event_number", sa.Integer, nullable=False),
        sa.Column("attendance_event_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.UniqueConstraint("subscription_id", "attendance_event_id", name="uq_subscription_notifications_event"),
        sa.UniqueConstraint("subscription_id", "event_number", name="uq_subscription_notifications_number"),
    )
    op.create_index(
        "ix_subscription_notifications_due",
        "subscription_notifications",
        ["subscription_id", "status", "event_number"],
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_notifications_due", table_name="subscription_notifications")
    op.drop_table("subscription_notifications")
    op.drop_index("ix_subscriptions_recipient", table_name="subscriptions")
    op.drop_table("subscriptions")
