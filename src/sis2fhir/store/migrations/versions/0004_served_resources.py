"""Issue 9: what the API serves per recipient (served_resources, served_tokens), and how a disclosure left
(disclosures.channel: push | api-read | bulk-export).

Revision ID: 0004_served_resources
Revises: 0003_measured_summaries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_served_resources"
down_revision: str | None = "0003_measured_summaries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_resources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("resource_type", sa.String(40), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("student", sa.String(200)),
        sa.Column("state_student_id", sa.String(200), nullable=False),
        sa.Column("consent_id", sa.String(200), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("effective_end", sa.String(10)),
        sa.Column("status", sa.String(32)),
        sa.Column("permits", sa.Boolean, nullable=False),
        sa.UniqueConstraint("recipient", "resource_type", "resource_id", name="uq_served_resource"),
    )
    op.create_index(
        "ix_served_order", "served_resources", ["recipient", "resource_type", "last_updated", "resource_id"]
    )
    op.create_index("ix_served_student", "served_resources", ["recipient", "student"])
    op.create_index("ix_served_patient", "served_resources", ["recipient", "resource_type", "patient_id"])
    op.create_table(
        "served_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("resource_type", sa.String(40), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("system", sa.String(500), nullable=False),
        sa.Column("value", sa.String(500), nullable=False),
    )
    op.create_index("ix_served_tokens_term", "served_tokens", ["recipient", "resource_type", "kind", "value"])
    op.create_index("ix_served_tokens_resource", "served_tokens", ["recipient", "resource_type", "resource_id"])
    op.add_column("disclosures", sa.Column("channel", sa.String(16), nullable=False, server_default="push"))


def downgrade() -> None:
    with op.batch_alter_table("disclosures") as batch:
        batch.drop_column("channel")
    op.drop_table("served_tokens")
    op.drop_table("served_resources")
