"""Issue 7: the measured summaries per student x school x as-of date, and the digest of the latest ones.

Revision ID: 0003_measured_summaries
Revises: 0002_fail_closed
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_measured_summaries"
down_revision: str | None = "0002_fail_closed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attendance_summaries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("district", sa.String(500), nullable=False),
        sa.Column("student_sourced_id", sa.String(200), nullable=False),
        sa.Column("school_sourced_id", sa.String(200), nullable=False),
        sa.Column("school_year", sa.Integer, nullable=False),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("days_in_membership", sa.Integer, nullable=False),
        sa.Column("days_absent_h", sa.Integer, nullable=False),
        sa.Column("excused_h", sa.Integer, nullable=False),
        sa.Column("unexcused_h", sa.Integer, nullable=False),
        sa.Column("illness_h", sa.Integer, nullable=False),
        sa.Column("oss_h", sa.Integer, nullable=False),
        sa.Column("rate", sa.Float),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("chronic", sa.Boolean),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_attendance_summaries_student",
        "attendance_summaries",
        ["district", "student_sourced_id", "school_sourced_id", "as_of"],
    )
    op.create_index("ix_attendance_summaries_run", "attendance_summaries", ["run_id"])
    op.create_table(
        "summary_digests",
        sa.Column("district", sa.String(500), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("summary_digests")
    op.drop_table("attendance_summaries")
