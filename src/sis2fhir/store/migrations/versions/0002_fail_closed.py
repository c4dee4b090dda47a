"""Issue 6 (fail closed): the disclosure log's certainty and its index on outbox_key; the runs' verdicts.

A state file that the ad-hoc upgrade of that release reached halfway (a crash between its steps) is stamped at
0001 and gets only what it lacks: every step looks first.

Revision ID: 0002_fail_closed
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_fail_closed"
down_revision: str | None = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = sa.inspect(op.get_bind())
    if "certainty" not in {c["name"] for c in have.get_columns("disclosures")}:
        # rows logged before issue 6 were written once the recipient had answered: confirmed
        op.add_column("disclosures", sa.Column("certainty", sa.String(16), nullable=False, server_default="confirmed"))
    if "ix_disclosures_outbox_key" not in {i["name"] for i in have.get_indexes("disclosures")}:
        op.create_index("ix_disclosures_outbox_key", "disclosures", ["outbox_key"])
    if not have.has_table("run_verdicts"):
        op.create_table(
            "run_verdicts",
            sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("district", sa.String(500), nullable=False),
            sa.Column("school_year", sa.Integer, nullable=False),
            sa.Column("as_of", sa.String(10), nullable=False),
            sa.Column("verdict", sa.String(16), nullable=False),
            sa.Column("accepted_reason", sa.Text, nullable=False),
            sa.Column("findings", sa.Text, nullable=False),
            sa.Column("measures", sa.Text, nullable=False),
            sa.Column("absent_digest", sa.LargeBinary),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_run_verdicts_baseline", "run_verdicts", ["district", "school_year", "verdict"])


def downgrade() -> None:
    op.drop_table("run_verdicts")
    op.drop_index("ix_disclosures_outbox_key", "disclosures")
    with op.batch_alter_table("disclosures") as batch:
        batch.drop_column("certainty")
