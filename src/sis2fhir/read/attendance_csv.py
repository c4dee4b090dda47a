"""attendance.csv read into attendance events on roster keys: the hot loop, one pass per row."""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sis2fhir.read.attendance_values import Resolver
from sis2fhir.read.csvfile import Columns, Reread, open_csv
from sis2fhir.read.cutting import FilePart
from sis2fhir.read.export import Export
from sis2fhir.records import AttendanceEvent, RejectedAttendance, Roster, Student
from sis2fhir.report import RowReport

ATTENDANCE_FILE = "attendance.csv"

ATTENDANCE = Columns(
    required=("schoolSourcedId", "date", "category"),
    optional=("duration", "reason", "style"),
    one_of=("studentSourcedId", "studentIdentifier"),
)


def iter_csv(
    export: Export,
    roster: Roster,
    report: RowReport,
    part: FilePart | None = None,
    rejected: RejectedAttendance | None = None,
    lines: Sequence[int] | None = None,
) -> Iterator[AttendanceEvent]:
    """`lines`: when this file is an extract of the export's attendance.csv (the columnar engine's rare rows), the
    line in the export of each of its lines (index: the extract's line); reports and events name those lines."""
    r = Resolver(roster, report, rejected)
    file = export.actual_name(ATTENDANCE_FILE)
    damaged = None if rejected is None else lambda line, fields: r.damaged_row(file, line, fields)
    table = open_csv(export, ATTENDANCE_FILE, report, ATTENDANCE, part, False, damaged)
    assert table is not None
    cols = table.columns
    reject = r.reject
    students, by_state_id, schools = r.students, r.by_state_id, r.schools
    state_of = {sid: st.state_id for sid, st in students.items()}
    dates, categories, durations, reasons = r.dates, r.categories, r.durations, r.reasons
    i_sid, i_state = cols.get("studentSourcedId"), cols.get("studentIdentifier")
    i_school, i_date, i_cat = cols.get("schoolSourcedId", 0), cols.get("date", 0), cols.get("category", 0)
    i_dur, i_reason = cols.get("duration"), cols.get("reason")
    add = report.add
    new, event = (
        tuple.__new__,
        AttendanceEvent,
    )  # tuple.__new__ is twice as fast as the NamedTuple constructor
    missing: Any = object()
    duration: float | None
    reason: str | None
    if not table.usable:
        deque(table.rows(), maxlen=0)  # reading through counts the rows and reports the missing column once
        return
    reader, base, width, regular, fix = table.reader, table.base, table.width, table.regular, table.fix_row
    prev = reader.line_num + base  # line = base + reader.line_num; base changes when a broken row is re-read
    n = 0
    try:  # CsvTable.rows() inlined: the per-row call would cost the hot path of a state's year (millions of rows)
        while True:
            try:
                for row in reader:
                    line = prev + 1
                    prev = reader.line_num + base
                    if prev != line or len(row) != width or not regular:
                        fixed = fix(row, line, prev)
                        if fixed is None:
                            continue
                        row = fixed
                    if lines is not None:
                        line = lines[line]
                    n += 1
                    student = row[i_sid] if i_sid is not None else ""
                    if student not in students:
                        student, other = _student_by_state(row, i_sid, i_state, students, by_state_id, file, line, add)
                        if student is None:
                            continue
                        if other is not None:  # two students named: it cannot be told whose day it is
                            reject((student, other), row[i_school], row[i_date], file, line)
                            continue
                    elif (
                        i_state is not None
                        and (state := row[i_state])
                        and state != state_of[student]
                        and (other := _other_student(student, state, students, by_state_id, file, line, add))
                    ):
                        reject((student, other), row[i_school], row[i_date], file, line)
                        continue
                    school = schools.get(row[i_school])
                    if school is None and (school := schools.get(row[i_school].strip())) is None:
                        add(
                            file,
                            line,
                            "schoolSourcedId",
                            "unknown-school",
                            f"School '{row[i_school]}' is not a school in orgs.csv; row not used.",
                        )
                        reject((student,), "", row[i_date], file, line)
                        continue
                    raw = row[i_date]
                    day = dates.get(raw, missing)
                    if day is missing:
                        day = r.day(raw)
                    if day is None:
                        add(
                            file,
                            line,
                            "date",
                            "bad-date",
                            f"date '{raw}' is not an ISO 8601 date (YYYY-MM-DD); row not used.",
                        )
                        reject((student,), school, raw, file, line)
                        continue
                    raw = row[i_cat]
                    category = categories.get(raw, missing)
                    if category is missing:
                        category = r.category(raw)
                    if category is None:
                        add(
                            file,
                            line,
                            "category",
                            "unknown-category",
                            f"category '{raw}' is not an Ed-Fi attendance category "
                            "(In Attendance, Present, Excused Absence, "
                            "Unexcused Absence, Tardy, Early departure, Partial); row not used.",
                        )
                        reject((student,), school, row[i_date], file, line)
                        continue
                    if i_dur is None:
                        duration = 1.0
                    else:
                        raw = row[i_dur]
                        duration = durations.get(raw, missing)
                        if duration is missing:
                            duration = r.duration(raw)
                        if duration is None:
                            add(
                                file,
                                line,
                                "duration",
                                "bad-duration",
                                f"duration '{raw}' is not a fraction of a day in (0, 1], e.g. 1, 0.5 or 0.33; "
                                "row not used.",
                            )
                            reject((student,), school, row[i_date], file, line)
                            continue
                    if i_reason is None:
                        reason = ""
                    else:
                        raw = row[i_reason]
                        reason = reasons.get(raw)
                        if reason is None:
                            reason = r.reason(raw, file, line, "reason")
                    yield new(event, (student, school, day, category, duration, reason, file, line))
                break
            except Reread as broken:
                reader, base = table.recover(broken.line, broken.end, broken.why)
                prev = base
            except csv.Error:
                reader, base = table.recover(prev + 1, reader.line_num + base, "")
                prev = base
    finally:
        table.finish(n)


def _student_by_state(
    row: list[str],
    i_sid: int | None,
    i_state: int | None,
    students: dict[str, Student],
    by_state_id: dict[str, str],
    file: str,
    line: int,
    add: Callable[..., None],
) -> tuple[str | None, str | None]:
    """(the row's student or None when it names none, the other student when it names two: reported)."""
    if i_sid is not None and (sid := row[i_sid].strip()) in students:  # padded with spaces
        if i_state is not None:
            return sid, _other_student(sid, row[i_state], students, by_state_id, file, line, add)
        return sid, None
    if i_state is not None and row[i_state]:
        found = by_state_id.get(row[i_state].strip())
        if found is not None:
            return found, None
        add(
            file,
            line,
            "studentIdentifier",
            "unknown-student",
            "No student in users.csv has this row's studentIdentifier (state id); row not used.",
        )
        return None, None
    if i_sid is not None and row[i_sid]:
        add(
            file,
            line,
            "studentSourcedId",
            "unknown-student",
            f"Student '{row[i_sid]}' is not a student in users.csv; row not used.",
        )
        return None, None
    add(
        file,
        line,
        "studentSourcedId",
        "missing-student",
        "Row names no student (studentSourcedId and studentIdentifier are blank); not used.",
    )
    return None, None


def _other_student(
    student: str,
    state: str,
    students: dict[str, Student],
    by_state_id: dict[str, str],
    file: str,
    line: int,
    add: Callable[..., None],
) -> str | None:
    """The other student (reported) when the row's studentIdentifier is another student's state id than `student`'s."""
    state = state.strip()
    if not state or state == students[student].state_id:
        return None
    other = by_state_id.get(state)
    if other is None or other == student:
        return None  # the state id names no student: the sourcedId decides
    add(
        file,
        line,
        "studentIdentifier",
        "student-mismatch",
        f"studentSourcedId names student '{student}' but studentIdentifier is the state id of student '{other}'; "
        "row not used (it cannot be told whose day it is). Correct one of the two.",
    )
    return other
