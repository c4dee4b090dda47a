"""Issue 9: the Bulk Data $export jobs (api/bulk.py), and the index the served set's consent check needs
(ix_served_consent: without it an export at 100k students is quadratic on SQLite).

Revision ID: 0005_export_jobs
Revises: 0004_served_resources (0003 before the i9-store merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_export_jobs"
down_revision: str | None = "0004_served_resources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("types", sa.Text, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.String(200), nullable=False),
        sa.Column("transaction_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
    )
    op.create_index("ix_export_jobs_client", "export_jobs", ["client_id", "status"])
    op.create_index("ix_served_consent", "served_resources", ["recipient", "resource_type", "student", "permits"])


def downgrade() -> None:
    op.drop_index("ix_served_consent", "served_resources")
    op.drop_index("ix_export_jobs_client", "export_jobs")
    op.drop_table("export_jobs")
