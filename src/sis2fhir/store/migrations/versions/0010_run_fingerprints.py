"""Issue 12: the fingerprint of each completed sync (run_fingerprints), so that a re-run of identical input is not
read, measured and mapped again; digests, paths and counts only.

Revision ID: 0010_run_fingerprints
Revises: 0009_population_runs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_run_fingerprints"
down_revision: str | None = "0009_population_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_fingerprints",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("district", sa.String(500), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("identical_to", sa.Integer),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("report_path", sa.Text, nullable=False),
        sa.Column("report_sha256", sa.String(64), nullable=False),
        sa.Column("outbox_mark", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_run_fingerprints_district", "run_fingerprints", ["district", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_fingerprints_district", table_name="run_fingerprints")
    op.drop_table("run_fingerprints")
