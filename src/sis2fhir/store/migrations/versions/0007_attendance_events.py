"""Issue 10: the events the notification triggers found (attendance_events), the state they were judged from
(transition_states), and the monthly tallies of each measured summary (attendance_summaries.months, .projected_rate).

Revision ID: 0007_attendance_events
Revises: 0006_client_assertions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_attendance_events"
down_revision: str | None = "0006_client_assertions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attendance_summaries", sa.Column("months", sa.Text()))
    op.add_column("attendance_summaries", sa.Column("projected_rate", sa.Float()))
    op.create_table(
        "attendance_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("district", sa.String(500), nullable=False),
        sa.Column("school_year", sa.Integer, nullable=False),
        sa.Column("student_sourced_id", sa.String(200), nullable=False),
        sa.Column("school_sourced_id", sa.String(200), nullable=False),
        sa.Column("trigger", sa.String(40), nullable=False),
        sa.Column("episode", sa.String(100), nullable=False),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("occurred_on", sa.String(10), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "district",
            "school_year",
            "student_sourced_id",
            "school_sourced_id",
            "trigger",
            "episode",
            name="uq_attendance_events_episode",
        ),
    )
    op.create_table(
        "transition_states",
        sa.Column("district", sa.String(500), primary_key=True),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transition_states")
    op.drop_table("attendance_events")
    op.drop_column("attendance_summaries", "projected_rate")
    op.drop_column("attendance_summaries", "months")
