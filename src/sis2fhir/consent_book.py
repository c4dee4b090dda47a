"""The district's consents, student by student, held packed for the whole run (read/consents.py fills it)."""

from __future__ import annotations

import marshal
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from sis2fhir.records import ConsentRecord

_Shared = str | date | tuple[str, ...] | None


class ConsentBook(Mapping[str, tuple[ConsentRecord, ...]]):
    """Student sourcedId -> their consents, in the order added (file order), all from one `file`.

    A sync holds the consents from the reading until its mapping workers are forked, and every mapper holds them to
    the end: as ConsentRecords they were the run's second-largest holding after the roster (at 100k students the 111,431
    consents took 51.3 MB traced, about 460 bytes each: the record, its three strings of its own, its line number,
    a tuple and a dict entry per student). Here a student's consents are one marshalled bytes object of their own
    strings (consentId, grantorName, documentUrl), their line numbers and indices into one table of the values
    consents share (recipients, relationships, purposes, scopes, statuses, dates; each stored once), and are made
    into ConsentRecords again when asked for: by the gate, a student at a time. What a sync asks of all of them at
    once, the recipients named and the revoked consents, is kept as they are added."""

    __slots__ = ("_index", "_packed", "_recipients", "_revoked", "_shared", "file")

    def __init__(self, file: str) -> None:
        self.file = file
        self._packed: dict[str, bytes] = {}
        self._shared: list[Any] = []  # _Shared values, by index
        self._index: dict[_Shared, int] = {}
        self._recipients: dict[str, None] = {}  # in the order first named
        self._revoked: list[tuple[str, str]] = []  # (student, recipient) of each revoked consent

    def add(self, consent: ConsentRecord) -> None:
        """`consent` after the student's earlier ones (its `file` is the book's; its student id is kept as given)."""
        c, ix = consent, self._at
        row = (c.consent_id, c.grantor_name, c.document_url, c.line, ix(c.grantor_relationship),
               ix(c.recipient_organization), ix(c.recipient_name), ix(c.purpose), ix(c.data_scope), ix(c.signed),
               ix(c.period_start), ix(c.period_end), ix(c.status), ix(c.revoked))  # fmt: skip
        sid = c.student_sourced_id
        earlier = self._packed.get(sid)
        rows = (row,) if earlier is None else (*marshal.loads(earlier), row)
        self._packed[sid] = marshal.dumps(rows)  # the key stays the first consent's string, in its place
        self._recipients.setdefault(c.recipient_organization)
        if c.status == "revoked":
            self._revoked.append((sid, c.recipient_organization))

    def _at(self, value: _Shared) -> int:
        n = self._index.get(value)
        if n is None:
            n = self._index[value] = len(self._shared)
            self._shared.append(value)
        return n

    def __getitem__(self, student: str) -> tuple[ConsentRecord, ...]:
        rows = marshal.loads(self._packed[student])
        s, file = self._shared, self.file
        return tuple(
            ConsentRecord(
                consent_id=cid,
                student_sourced_id=student,
                grantor_name=grantor,
                grantor_relationship=s[rel],
                recipient_organization=s[org],
                recipient_name=s[name],
                purpose=s[purpose],
                data_scope=s[scope],
                signed=s[signed],
                period_start=s[start],
                period_end=s[end],
                status=s[status],
                revoked=s[revoked],
                document_url=url,
                file=file,
                line=line,
            )
            for cid, grantor, url, line, rel, org, name, purpose, scope, signed, start, end, status, revoked in rows
        )

    def __contains__(self, student: object) -> bool:
        return student in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def recipients(self) -> list[str]:
        """Every recipient organization a consent names, in the order first named."""
        return list(self._recipients)

    def revoked(self) -> list[tuple[str, str]]:
        """(student, recipient organization) of every consent whose status is revoked, in the order added."""
        return list(self._revoked)
