"""What operators do with the outbox (sis2fhir outbox ...): count, list, find keys, make items due again."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select, update

from sis2fhir.deliver.outbox.items import DEAD, QUEUED, UNDELIVERED, OutboxTable, now_utc
from sis2fhir.store.schema import outbox


class Operating(OutboxTable):
    def counts(self) -> dict[tuple[str, str], int]:
        """(destination, status) -> items."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.destination, outbox.c.status, func.count()).group_by(
                    outbox.c.destination, outbox.c.status
                )
            )
            return {(d, s): n for d, s, n in rows}

    def statuses_by_key_prefix(self, prefix: str, limit: int = 50) -> dict[str, str]:
        """key -> status of (at most `limit`) items whose key starts with `prefix` (as `outbox list` shows keys;
        taken literally, not as a LIKE pattern)."""
        with self.engine.connect() as conn:
            q = select(outbox.c.key, outbox.c.status).where(outbox.c.key.startswith(prefix, autoescape=True))
            return {k: st for k, st in conn.execute(q.limit(limit))}

    def make_due(self, statuses: Sequence[str] = UNDELIVERED, keys: Sequence[str] | None = None) -> int:
        """Retry now: queued/pending items become due; `replay` passes DEAD to give dead letters another go."""
        ts = now_utc()
        cond = [outbox.c.status.in_(builtins.list(statuses))]
        if keys:
            cond.append(outbox.c.key.in_(builtins.list(keys)))
        values: dict[str, Any] = {"next_attempt_at": ts, "updated_at": ts}
        if DEAD in statuses:
            values.update(status=QUEUED, created_at=ts)  # a replay gets a fresh retry window
        with self.engine.begin() as conn:
            return conn.execute(update(outbox).where(and_(*cond)).values(**values)).rowcount or 0

    def list(self, status: str | None = None, limit: int = 100) -> builtins.list[Any]:
        """The newest items, optionally of one status (the columns `outbox list` shows)."""
        q = select(
            outbox.c.key,
            outbox.c.recipient,
            outbox.c.destination,
            outbox.c.student_sourced_id,
            outbox.c.status,
            outbox.c.attempts,
            outbox.c.created_at,
            outbox.c.next_attempt_at,
            outbox.c.last_error,
        ).order_by(outbox.c.id.desc())
        if status:
            q = q.where(outbox.c.status == status)
        with self.engine.connect() as conn:
            return builtins.list(conn.execute(q.limit(limit)).all())
