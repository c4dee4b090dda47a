"""The tables of the release before issue 6 (commit 89dafb6): runs, the outbox and the disclosure log.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("export", sa.Text, nullable=False),
        sa.Column("changes", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("destination", sa.String(500), nullable=False),
        sa.Column("student_sourced_id", sa.String(200), nullable=False),
        sa.Column("state_student_id", sa.String(200), nullable=False),
        sa.Column("consent_id", sa.String(200), nullable=False),
        sa.Column("subject_key", sa.String(400), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_subject", "outbox", ["destination", "subject_key"])
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("student_sourced_id", sa.String(200), nullable=False),
        sa.Column("state_student_id", sa.String(200), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("destination", sa.String(500), nullable=False),
        sa.Column("consent_id", sa.String(200), nullable=False),
        sa.Column("disclosed", sa.Text, nullable=False),
        sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_key", sa.String(64), nullable=False),
        sa.Column("latency_seconds", sa.Float),
    )
    op.create_index("ix_disclosures_student", "disclosures", ["student_sourced_id"])
    op.create_index("ix_disclosures_state_id", "disclosures", ["state_student_id"])


def downgrade() -> None:
    for table in ("disclosures", "outbox", "runs"):
        op.drop_table(table)
