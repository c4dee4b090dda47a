"""Issue 9: the jti of every client assertion the API's token endpoint accepted (replays are refused).

Revision ID: 0006_client_assertions
Revises: 0003_measured_summaries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_client_assertions"
down_revision: str | None = "0005_export_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_assertions",
        sa.Column("client_id", sa.String(200), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_client_assertions_expiry", "client_assertions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("client_assertions")
