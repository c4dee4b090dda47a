"""consents.csv: parents' written FERPA consents (34 CFR 99.30) as ConsentRecords, keyed by student."""

from __future__ import annotations

import re
from datetime import date

from sis2fhir.consent_book import ConsentBook
from sis2fhir.read.csvfile import Columns, CsvTable, open_csv
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export, ExportError
from sis2fhir.records import ConsentRecord, Roster
from sis2fhir.report import RowReport

CONSENTS = Columns(
    required=("consentId", "grantorName", "recipientOrganization", "signedDate", "periodStart", "status"),
    optional=(
        "grantorRelationship",
        "recipientName",
        "purpose",
        "dataScope",
        "periodEnd",
        "revokedDate",
        "documentUrl",
    ),
    one_of=("studentSourcedId", "studentIdentifier"),
)
STATUSES = frozenset({"active", "revoked", "declined"})
DEFAULT_PURPOSE = "treatment-and-care-coordination"
DEFAULT_SCOPE = ("attendance",)
_SCOPE_SPLIT = re.compile(r"[;,\s]+")


def check_consents(export: Export) -> None:
    """ExportError now if consents.csv could not be read as consents (as `read_consents` would raise), nothing
    reported: a sync checks it before the attendance stage and reads the rows after it (at 1M students, read
    before, the consents added 289 MB of RSS to that stage's peak)."""
    table = _usable(export, RowReport())
    if table is not None:
        table.close()


def read_consents(export: Export, roster: Roster, report: RowReport, as_of: date) -> ConsentBook:
    """Student sourcedId -> their consents, in file order; an empty book when the export has no consents.csv.

    `as_of`: the run's as-of date; a consent signed after it is reported."""
    table = _usable(export, report)
    if table is None:
        return ConsentBook("consents.csv")
    file = table.file
    by_state_id = roster.student_by_state_id()
    consents = ConsentBook(file)
    seen_ids: dict[str, int] = {}
    days: dict[str, date | None] = {}  # each distinct date parsed once (the book keeps each value once)
    for line, row in table.dict_rows():

        def fail(column: str, code: str, message: str, line: int = line) -> None:
            report.add(file, line, column, code, message + " Consent not used.")

        consent_id = row["consentId"].strip()
        if not consent_id:
            fail("consentId", "missing-value", "consentId is blank.")
            continue
        if consent_id in seen_ids:
            fail(
                "consentId",
                "duplicate-consent",
                f"consentId '{consent_id}' is already used at line "
                f"{seen_ids[consent_id]}; each consent needs its own id.",
            )
            continue
        seen_ids[consent_id] = line
        student = _student(row, roster, by_state_id)
        if student is None:
            sid = row.get("studentSourcedId", "").strip()
            if sid:
                fail("studentSourcedId", "unknown-student", f"Student '{sid}' is not a student in users.csv.")
            elif row.get("studentIdentifier", "").strip():  # a state id: not repeated in the report
                fail("studentIdentifier", "unknown-student", "No student in users.csv has this state id.")
            else:
                fail(
                    "studentSourcedId",
                    "unknown-student",
                    "Row names no student (studentSourcedId and studentIdentifier are blank).",
                )
            continue
        state_id = row.get("studentIdentifier", "").strip()
        other = by_state_id.get(state_id) if state_id and state_id != roster.students[student].state_id else None
        if other is not None and other != student:
            fail(
                "studentIdentifier",
                "student-mismatch",
                f"studentSourcedId names student '{student}' but studentIdentifier is the state id of student "
                f"'{other}'; it cannot be told whose consent it is. Correct one of the two.",
            )
            continue
        blank = [c for c in ("grantorName", "recipientOrganization", "status") if not row[c].strip()]
        if blank:
            fail(blank[0], "missing-value", f"{blank[0]} is blank; it is required by FERPA 34 CFR 99.30.")
            continue
        status = row["status"].strip().lower()
        if status not in STATUSES:
            fail(
                "status",
                "bad-status",
                f"status '{row['status'].strip()}' is not active, revoked or declined.",
            )
            continue
        dates: dict[str, date | None] = {}
        bad = ""
        for col in ("signedDate", "periodStart", "periodEnd", "revokedDate"):
            raw = row.get(col, "").strip()
            if raw not in days:
                days[raw] = parse_date(raw) if raw else None
            dates[col] = days[raw]
            if raw and dates[col] is None:
                bad = col
                break
        if bad:
            fail(bad, "bad-date", bad_date(row[bad], bad))
            continue
        signed, start, end, revoked = (dates[c] for c in ("signedDate", "periodStart", "periodEnd", "revokedDate"))
        if signed is None or start is None:
            col = "signedDate" if signed is None else "periodStart"
            fail(col, "missing-value", f"{col} is blank; a consent must be dated (FERPA 34 CFR 99.30).")
            continue
        if end is not None and end < start:
            fail("periodEnd", "bad-period", "periodEnd is before periodStart.")
            continue
        if status == "revoked" and revoked is None:
            fail(
                "revokedDate",
                "missing-value",
                "status is revoked but revokedDate is blank; give the date the revocation was received.",
            )
            continue
        # Used, so that the gate decides as it does for any consent (a revocation is never dropped), but reported:
        # the dates say something that cannot be so.
        if revoked is not None and revoked < start:
            report.add(
                file,
                line,
                "revokedDate",
                "revoked-before-start",
                f"revokedDate {revoked} is before periodStart {start}: the consent was revoked before it started. "
                "It is used as revoked (nothing is disclosed under it). Check the dates.",
                "warning",
            )
        if signed > as_of:
            report.add(
                file,
                line,
                "signedDate",
                "signed-in-future",
                f"signedDate {signed} is after the as-of date {as_of}; a consent cannot be signed in the future. "
                "Nothing is disclosed under it before that date. Check the date.",
                "warning",
            )
        scope = tuple(s for s in _SCOPE_SPLIT.split(row.get("dataScope", "").strip().lower()) if s) or DEFAULT_SCOPE
        student = roster.students[student].sourced_id  # the roster's string object, not the row's
        consents.add(
            ConsentRecord(
                consent_id=consent_id,
                student_sourced_id=student,
                grantor_name=row["grantorName"].strip(),
                grantor_relationship=row.get("grantorRelationship", "").strip().lower(),
                recipient_organization=row["recipientOrganization"].strip(),
                recipient_name=row.get("recipientName", "").strip(),
                purpose=row.get("purpose", "").strip().lower() or DEFAULT_PURPOSE,
                data_scope=scope,
                signed=signed,
                period_start=start,
                period_end=end,
                status=status,
                revoked=revoked,
                document_url=row.get("documentUrl", "").strip(),
                file=file,
                line=line,
            )
        )
    return consents


def _usable(export: Export, report: RowReport) -> CsvTable | None:
    """consents.csv opened, its header resolved; None without one; ExportError if its rows cannot be read."""
    table = open_csv(export, "consents.csv", report, CONSENTS)
    if table is None or table.usable:
        return table
    table.close()  # a consents.csv that cannot be read as consents: its revocations could not be honoured
    file = table.file
    found = ", ".join(table.columns) or "none"  # only the columns it knows: a row taken for a header is data
    what = (
        f"has no {', '.join(repr(c) for c in table.missing)} column (consents columns found: {found})"
        if table.header_found
        else "is empty (not even a header row)"
    )
    raise ExportError(
        f"{file} {what}, so its consents and revocations cannot be read; nothing is sent, since a revoked "
        f"consent could not be honoured. Export {file} again with its header row ({', '.join(CONSENTS.required)}, "
        "studentSourcedId or studentIdentifier); with no consents yet, a header-only file says so."
    )


def _student(row: dict[str, str], roster: Roster, by_state_id: dict[str, str]) -> str | None:
    sid = row.get("studentSourcedId", "").strip()
    if sid:
        return sid if sid in roster.students else None
    state_id = row.get("studentIdentifier", "").strip()
    return by_state_id.get(state_id) if state_id else None
