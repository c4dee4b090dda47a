"""A cohort file from a health partner (`sis2fhir evaluate --cohort FILE`): students by sourcedId or state id, each
with a cohort label. Individual-level data: a row the roster does not know is reported by line only (the id is not
repeated anywhere), and nothing of the file is written but its SHA-256 and the counts.

```csv
studentIdentifier,cohort
1000104729,asthma-program
```
(`studentSourcedId` instead of, or beside, `studentIdentifier`, as in consents.csv.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sis2fhir.errors import Unusable
from sis2fhir.read.csvfile import open_csv
from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.header import Columns
from sis2fhir.records import Roster
from sis2fhir.report import RowReport

COHORT = Columns(required=("cohort",), one_of=("studentSourcedId", "studentIdentifier"))


@dataclass(slots=True)
class Cohorts:
    """label -> students (sourcedIds) in file order; `sha256` names the file read, `rows_used` counts its rows."""

    members: dict[str, set[str]] = field(default_factory=dict)
    sha256: str = ""
    rows_used: int = 0


def read_cohort(path: Path, roster: Roster, report: RowReport) -> Cohorts:
    """The cohort file's students by label; Unusable when the file cannot be read as a cohort file at all."""
    if not path.is_file():
        raise Unusable(
            f"--cohort {path} is not a file; give the cohort CSV (studentIdentifier or studentSourcedId, cohort)"
        )
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise Unusable(f"--cohort {path} cannot be read: {e.strerror}") from None
    export = Export(path.parent, {path.name.lower(): path.name}, None)
    try:
        table = open_csv(export, path.name, report, COHORT)
    except ExportError as e:
        raise Unusable(f"--cohort: {e}") from None
    assert table is not None  # the file is there
    if not table.usable:
        table.close()
        raise Unusable(
            f"--cohort {path} has no cohort column and no studentIdentifier or studentSourcedId column; give a CSV "
            "with a header row: studentIdentifier (or studentSourcedId), cohort"
        )
    out = Cohorts(sha256=digest)
    by_state_id = roster.student_by_state_id()
    file = table.file
    for line, row in table.dict_rows():
        label = row["cohort"].strip()
        sid = row.get("studentSourcedId", "").strip()
        state_id = row.get("studentIdentifier", "").strip()
        column = "studentSourcedId" if sid else "studentIdentifier"
        student = (sid if sid in roster.students else None) if sid else by_state_id.get(state_id) if state_id else None
        if not label:
            report.add(file, line, "cohort", "missing-value", "the cohort label is blank; row not used")
            continue
        if not sid and not state_id:
            report.add(file, line, column, "unknown-student", "the row names no student; row not used")
            continue
        if student is None:  # the id is not repeated: the report must not carry a partner's identifiers
            report.add(file, line, column, "unknown-student", "no student in users.csv has this id; row not used")
            continue
        if sid and state_id and by_state_id.get(state_id, student) != student:
            report.add(
                file,
                line,
                "studentIdentifier",
                "student-mismatch",
                "studentSourcedId and studentIdentifier name different students; row not used",
            )
            continue
        out.members.setdefault(label, set()).add(student)
        out.rows_used += 1
    table.close()
    return out
