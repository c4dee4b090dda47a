"""The FERPA disclosure record (34 CFR 99.32) of one student: what was disclosed, to whom, when, under which
consent, and how certain it is that the recipient holds it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

from sis2fhir.config import Settings
from sis2fhir.deliver.disclosure_log import CONFIRMED
from sis2fhir.service.state import open_existing
from sis2fhir.store.disclosures import Disclosure as LoggedDisclosure
from sis2fhir.store.disclosures import disclosures_of


@dataclass(frozen=True)
class Disclosure:
    """One row of the disclosure log; `disclosed`: the resource ids/versions, message control ids or files."""

    id: int
    student_sourced_id: str
    state_student_id: str
    recipient: str
    destination: str
    consent_id: str
    disclosed: list[str]
    disclosed_at: datetime
    outbox_key: str
    latency_seconds: float | None
    certainty: str  # confirmed | sending (an attempt under way, or the process stopped) | in-doubt
    channel: str  # push (a destination) | api-read | bulk-export (what the API served, one row per request)

    @property
    def confirmed(self) -> bool:
        return self.certainty == CONFIRMED

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, row: LoggedDisclosure) -> Disclosure:
        return cls(**(asdict(row) | {"disclosed": orjson.loads(row.disclosed)}))


def disclosures(settings: Settings, student: str) -> list[Disclosure]:
    """What was disclosed about a student (by sourcedId or state id), oldest first. Rows whose delivery was never
    confirmed (a crash, a timeout after sending) are in doubt: possibly disclosed. StoreMissing when no sync
    wrote the store."""
    return [Disclosure.of(r) for r in disclosures_of(open_existing(settings), student)]
