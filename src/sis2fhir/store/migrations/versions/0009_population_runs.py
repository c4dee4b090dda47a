"""Issue 13: the runs of `sis2fhir population` and `sis2fhir evaluate` (population_runs): what was asked, under
which agreement, and the counts written; no student identifier.

Revision ID: 0009_population_runs
Revises: 0008_subscriptions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_population_runs"
down_revision: str | None = "0008_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "population_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("command", sa.String(20), nullable=False),
        sa.Column("district", sa.String(500), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("program_start", sa.String(10)),
        sa.Column("export", sa.Text, nullable=False),
        sa.Column("out", sa.Text, nullable=False),
        sa.Column("agreement", sa.Text, nullable=False, server_default=""),
        sa.Column("cohort", sa.Text, nullable=False, server_default=""),
        sa.Column("cohort_sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("summary", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("population_runs")
