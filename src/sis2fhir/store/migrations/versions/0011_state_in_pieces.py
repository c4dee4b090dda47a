"""Issue 12: the summary digest and the transition state of a district in pieces (store/pieces.py), each piece a row
read and written on its own, instead of one blob parsed whole on every run (a daily increment at 1M students
parsed about 800 MB of it, measured 2026-12-03). Every stored digest and state is regrouped into its pieces; the
school year, inside the state blob until now, becomes a column of transition_states.

Revision ID: 0011_state_in_pieces
Revises: 0010_run_fingerprints
"""

from __future__ import annotations

import zlib

import orjson
import sqlalchemy as sa
from alembic import op

from sis2fhir.store.pieces import pack, split, unpack

revision = "0011_state_in_pieces"
down_revision: str | None = "0010_run_fingerprints"
branch_labels = None
depends_on = None

# the tables as this revision reads and writes them (not schema.py's, which moves on)
DIGESTS = sa.table(
    "summary_digests", sa.column("district"), sa.column("run_id"), sa.column("digest"), sa.column("recorded_at")
)
DIGEST_PIECES = sa.table(
    "summary_digest_pieces",
    sa.column("district"),
    sa.column("piece"),
    sa.column("run_id"),
    sa.column("digest"),
    sa.column("recorded_at"),
)
STATES = sa.table("transition_states", sa.column("district"), sa.column("school_year"), sa.column("state"))
STATE_PIECES = sa.table("transition_state_pieces", sa.column("district"), sa.column("piece"), sa.column("state"))


def upgrade() -> None:
    op.create_table(
        "summary_digest_pieces",
        sa.Column("district", sa.String(500), primary_key=True),
        sa.Column("piece", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "transition_state_pieces",
        sa.Column("district", sa.String(500), primary_key=True),
        sa.Column("piece", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )
    op.add_column("transition_states", sa.Column("school_year", sa.Integer))
    conn = op.get_bind()
    for d in conn.execute(sa.select(DIGESTS)).all():  # one district at a time: each parsed whole, this once
        whole = orjson.loads(zlib.decompress(d.digest))
        rows = [{"district": d.district, "piece": n, "run_id": d.run_id, "digest": pack(orjson.dumps(piece)),
                 "recorded_at": d.recorded_at} for n, piece in split(whole).items()]  # fmt: skip
        if rows:
            conn.execute(sa.insert(DIGEST_PIECES), rows)
    for s in conn.execute(sa.select(STATES.c.district, STATES.c.state)).all():
        state = orjson.loads(zlib.decompress(s.state))
        conn.execute(
            sa.update(STATES).where(STATES.c.district == s.district).values(school_year=int(state["school_year"]))
        )
        rows = [{"district": s.district, "piece": n, "state": pack(orjson.dumps(piece))}
                for n, piece in split(state["schools"]).items()]  # fmt: skip
        if rows:
            conn.execute(sa.insert(STATE_PIECES), rows)
    op.drop_table("summary_digests")
    with op.batch_alter_table("transition_states") as batch:
        batch.alter_column("school_year", existing_type=sa.Integer, nullable=False)
        batch.drop_column("state")


def downgrade() -> None:
    op.create_table(
        "summary_digests",
        sa.Column("district", sa.String(500), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("transition_states", sa.Column("state", sa.LargeBinary))
    conn = op.get_bind()
    pieces = conn.execute(sa.select(DIGEST_PIECES).order_by("district", "piece")).all()
    for district in sorted({p.district for p in pieces}):
        of = [p for p in pieces if p.district == district]
        whole: dict[str, dict[str, object]] = {}
        for p in of:
            for school, numbers in unpack(p.digest).items():
                whole.setdefault(school, {}).update(numbers)
        last = max(of, key=lambda p: p.recorded_at)
        blob = pack(orjson.dumps(whole))
        values = {"district": district, "run_id": last.run_id, "digest": blob, "recorded_at": last.recorded_at}
        conn.execute(sa.insert(DIGESTS).values(**values))
    header = sa.table("transition_states", sa.column("district"), sa.column("school_year"), sa.column("as_of"))
    for h in conn.execute(sa.select(header)).all():
        schools: dict[str, dict[str, object]] = {}
        for p in conn.execute(sa.select(STATE_PIECES.c.state).where(STATE_PIECES.c.district == h.district)).all():
            for school, states in unpack(p.state).items():
                schools.setdefault(school, {}).update(states)
        blob = pack(orjson.dumps({"school_year": h.school_year, "as_of": h.as_of, "schools": schools}))
        conn.execute(sa.update(STATES).where(STATES.c.district == h.district).values(state=blob))
    op.drop_table("transition_state_pieces")
    op.drop_table("summary_digest_pieces")
    with op.batch_alter_table("transition_states") as batch:
        batch.alter_column("state", existing_type=sa.LargeBinary, nullable=False)
        batch.drop_column("school_year")
