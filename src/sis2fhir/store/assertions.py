"""The client assertions the API's token endpoint accepted, by client and jti: a jti is accepted once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from sis2fhir.store.schema import client_assertions

MAX_JTI_LENGTH = 255


def remember_jti(engine: Engine, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
    """Record the jti of an accepted assertion; False when it was recorded before (a replay). The jtis of
    assertions expired by `now` are pruned in the same transaction (those assertions are refused anyway)."""
    t = client_assertions
    try:
        with engine.begin() as conn:
            conn.execute(delete(t).where(t.c.expires_at < now))
            conn.execute(insert(t).values(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:  # the primary key (client_id, jti): inserted before, by this process or another
        return False
    return True
