"""Attendance events streamed from attendance.csv or Ed-Fi StudentAttendance XML, on roster keys."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Literal

from sis2fhir.read.csvfile import Columns, FilePart, Reread, open_csv, parse_date
from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.xmlhead import XmlHead, is_edfi_namespace, parse_problem, read_head
from sis2fhir.records import AttendanceCategory, AttendanceEvent, RejectedAttendance, Roster, Student
from sis2fhir.report import RowReport
from sis2fhir.terminology import ABSENCE_REASONS

AttendanceStyle = Literal["positive", "exception-only", "edfi"]
ATTENDANCE_FILE = "attendance.csv"
CALENDAR_FILE = "calendar.csv"
EDFI_ROOT = "InterchangeStudentAttendance"
EDFI_DESCRIPTOR = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#"

ATTENDANCE = Columns(
    required=("schoolSourcedId", "date", "category"),
    optional=("duration", "reason", "style"),
    one_of=("studentSourcedId", "studentIdentifier"),
)


def _compact(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text).lower()


# Ed-Fi AttendanceEventCategoryDescriptor code values and the CEDS codes, compared without case or spaces.
_CATEGORIES: dict[str, AttendanceCategory] = {_compact(c.value): c for c in AttendanceCategory}
_CATEGORIES |= {
    "excused": AttendanceCategory.EXCUSED_ABSENCE,
    "unexcused": AttendanceCategory.UNEXCUSED_ABSENCE,
}
_PRESENCE = frozenset({AttendanceCategory.IN_ATTENDANCE, AttendanceCategory.PRESENT})

# Free-text absence reasons as districts type them, to the codes of terminology.ABSENCE_REASONS.
_REASON_PHRASES: list[tuple[str, str]] = [
    ("out of school suspension", "suspension-out-of-school"),
    ("out-of-school suspension", "suspension-out-of-school"),
    ("in school suspension", "suspension-in-school"),
    ("in-school suspension", "suspension-in-school"),
    ("mental health", "mental-health"),
    ("behavioral health", "mental-health"),
    ("doctor", "medical"),
    ("dentist", "medical"),
    ("dental", "medical"),
    ("appointment", "medical"),
    ("hospital", "medical"),
    ("therapy", "medical"),
    ("medical", "medical"),
    ("sick", "illness"),
    ("illness", "illness"),
    ("flu", "illness"),
    ("fever", "illness"),
    ("covid", "illness"),
    ("bus", "transportation"),
    ("transport", "transportation"),
    ("religio", "religious"),
    ("funeral", "family"),
    ("bereavement", "family"),
    ("family", "family"),
]
_REASON_WORDS: dict[str, str] = {
    "oss": "suspension-out-of-school",
    "iss": "suspension-in-school",
    "ill": "illness",
    "unknown": "unknown",
    "not recorded": "unknown",
}


def reason_code(text: str) -> str | None:
    """The absence-reason code for a district's reason text; "" for none, None when not recognised."""
    t = " ".join(text.replace("_", " ").split()).lower()
    if not t:
        return ""
    if t in ABSENCE_REASONS:
        return t
    code = t.replace(" ", "-")
    if code in ABSENCE_REASONS:
        return code
    if t in _REASON_WORDS:
        return _REASON_WORDS[t]
    words = set(re.split(r"[^a-z]+", t))
    for word, code in _REASON_WORDS.items():
        if word in words:
            return code
    for phrase, code in _REASON_PHRASES:
        if phrase in t:
            return code
    return None


def category_of(text: str) -> AttendanceCategory | None:
    """An attendance category from a bare Ed-Fi value, a descriptor URI or a CEDS code, in any case."""
    t = text.strip()
    if "#" in t:
        t = t.rsplit("#", 1)[1]
    return _CATEGORIES.get(_compact(t))


@dataclass(frozen=True, slots=True)
class StyleDecision:
    style: AttendanceStyle
    reason: str  # how it was decided, for the run log


def edfi_files(export: Export) -> list[str]:
    """The export's XML files whose root element is InterchangeStudentAttendance in an Ed-Fi namespace."""
    return [h.name for h in _xml_heads(export) if h.root == EDFI_ROOT and not h.problem]


def _xml_heads(export: Export) -> list[XmlHead]:
    """Each XML file's root, or why it is not read; an InterchangeStudentAttendance root in another namespace is
    not Ed-Fi's interchange (refused like a file that does not parse, not ignored: it looks like attendance)."""
    heads = []
    for name in export.names():
        if not name.lower().endswith(".xml"):
            continue
        head = read_head(export, name)
        if head.root == EDFI_ROOT and not is_edfi_namespace(head.namespace):
            why = f"has its root {EDFI_ROOT} in the namespace '{head.namespace}', which is not an Ed-Fi namespace "
            head = XmlHead(name, "", head.namespace, why + "(http://ed-fi.org/...), so it is not an Ed-Fi interchange")
        heads.append(head)
    return heads


def _broken_xml(export: Export) -> list[XmlHead]:
    """XML files that cannot be read as far as their root element: perhaps the Ed-Fi attendance, unreadable."""
    return [h for h in _xml_heads(export) if h.problem]


def _xml_unreadable(report: RowReport, name: str, line: int, what: str, before: str) -> None:
    report.add(name, line, "", "file-unreadable", f"{name} {what}; {before}. Export the file again.")


_STYLE_SAMPLE = 20_000  # rows read to decide the style (without a style column)
_POSITIVE_SHARE = 0.5  # of them In Attendance/Present: a positive file


def decide_attendance_style(export: Export) -> StyleDecision:
    """Positive, exception-only or Ed-Fi, and why: the `style` column if given, else what the rows show."""
    if not export.has(ATTENDANCE_FILE):
        if edfi_files(export) or _broken_xml(export):
            return StyleDecision("edfi", "no attendance.csv; Ed-Fi InterchangeStudentAttendance XML is read.")
        raise ExportError(
            "The export has neither attendance.csv nor an Ed-Fi InterchangeStudentAttendance .xml file. "
            "Add the attendance export."
        )
    table = open_csv(export, ATTENDANCE_FILE, RowReport(), ATTENDANCE, stop_if_unreadable=False)
    assert table is not None
    i_style = table.columns.get("style")
    i_cat = table.columns.get("category")
    rows = presence = 0
    try:
        for _, row in table.rows():
            if i_style is not None and row[i_style].strip():
                style = row[i_style].strip().lower().replace("_", "-")
                if style in ("positive", "exception-only"):
                    return StyleDecision(style, f"attendance.csv says style '{style}'.")  # type: ignore[arg-type]
            rows += 1
            if i_cat is not None and category_of(row[i_cat]) in _PRESENCE:
                presence += 1
            if rows >= _STYLE_SAMPLE and i_style is None:
                break
    finally:
        table.close()
    # A positive file has a row per student and school day, so In Attendance/Present is most of it (absence rates
    # are a few per cent). Exception-only exports still carry a few presence rows: SIS exports list in-school
    # suspensions as In Attendance with a reason, for example.
    if rows and presence >= rows * _POSITIVE_SHARE:
        return StyleDecision("positive", "most attendance.csv rows are In Attendance/Present, so every day has a row.")
    if export.has(CALENDAR_FILE):
        return StyleDecision(
            "exception-only",
            "attendance.csv rows are mostly not In Attendance/Present (exceptions only); calendar.csv gives the school "
            "days.",
        )
    return StyleDecision(
        "exception-only",
        "attendance.csv rows are mostly not In Attendance/Present, so it lists exceptions only, and there is no "
        "calendar.csv to give the school days: add calendar.csv (or a style column saying positive).",
    )


def attendance_style(export: Export) -> AttendanceStyle:
    """positive | exception-only | edfi (see decide_attendance_style for why)."""
    return decide_attendance_style(export).style


class _Resolver:
    """Per-distinct-value caches: 18M rows hold a few hundred dates, a handful of categories and reasons."""

    def __init__(self, roster: Roster, report: RowReport, rejected: RejectedAttendance | None = None) -> None:
        self.report = report
        self.rejected = rejected
        self.students = roster.students
        self.by_state_id = roster.student_by_state_id()
        self.schools: dict[str, str] = {}
        for s in roster.schools.values():
            if s.identifier:
                self.schools.setdefault(s.identifier, s.sourced_id)
        for s in roster.schools.values():
            self.schools[s.sourced_id] = s.sourced_id
        self.dates: dict[str, date | None] = {}
        self.categories: dict[str, AttendanceCategory | None] = {}
        self.durations: dict[str, float | None] = {"": 1.0}
        self.reasons: dict[str, str] = {"": ""}
        self.reasons_reported: set[str] = set()

    def day(self, text: str) -> date | None:
        d = parse_date(text)
        self.dates[text] = d
        return d

    def category(self, text: str) -> AttendanceCategory | None:
        c = category_of(text)
        self.categories[text] = c
        return c

    def duration(self, text: str) -> float | None:
        try:
            d: float | None = float(text.strip() or "1")
        except ValueError:
            d = None
        if d is not None and not 0 < d <= 1:
            d = None
        self.durations[text] = d
        return d

    def reason(self, text: str, file: str, line: int, column: str) -> str:
        code = reason_code(text)
        if code is None:
            code = "unknown"
            key = " ".join(text.split()).lower()
            if key not in self.reasons_reported:
                self.reasons_reported.add(key)
                self.report.add(
                    file,
                    line,
                    column,
                    "unknown-reason",
                    f"Absence reason '{text.strip()}' is not recognised; read as 'unknown' "
                    f"(reported once, first "
                    f"at line {line}). Use one of: {', '.join(ABSENCE_REASONS)}.",
                    "warning",
                )
        self.reasons[text] = code
        return code

    def reject(self, who: tuple[str, ...], school: str, day: str, file: str, line: int) -> None:
        """Note that a row of these students (school and date as the row gives them) was rejected."""
        if self.rejected is None:
            return
        found = self.schools.get(school)
        if found is None:
            found = self.schools.get(school.strip())
        d = self.dates[day] if day in self.dates else self.day(day)
        for student in who:
            self.rejected.add(student, found, d, file, line)

    def damaged_row(self, file: str, line: int, fields: dict[str, str]) -> None:
        """A row the CSV layer rejected (damaged line, broken quote, ragged): whose it was, if that can be read.

        A value is taken only when it holds no replaced byte and names a student of the roster."""
        who: list[str] = []
        sid = fields.get("studentSourcedId", "").strip()
        if sid in self.students and "\ufffd" not in sid:
            who.append(sid)
        state = fields.get("studentIdentifier", "").strip()
        other = self.by_state_id.get(state) if state and "\ufffd" not in state else None
        if other is not None and other not in who:
            who.append(other)  # two students named: it cannot be told whose day it is, so both
        if who:
            self.reject(tuple(who), fields.get("schoolSourcedId", ""), fields.get("date", ""), file, line)


def iter_attendance(
    export: Export,
    roster: Roster,
    report: RowReport,
    part: FilePart | None = None,
    rejected: RejectedAttendance | None = None,
) -> Iterator[AttendanceEvent]:
    """Every usable attendance event, streamed; unusable rows go to `report` (file, line, column).

    `part`: only that byte range of attendance.csv (see `attendance_parts`). `rejected`: where the students of
    rejected rows are noted (when the row still tells whose it was), so that their attendance is withheld."""
    if part is not None:
        yield from _iter_csv(export, roster, report, part, rejected)
        return
    xml = edfi_files(export)
    if export.has(ATTENDANCE_FILE):
        if xml:
            report.add(
                xml[0],
                0,
                "",
                "edfi-ignored",
                f"attendance.csv is read, so the Ed-Fi files {', '.join(xml)} are not (two sources would "
                "double-count). Give one of the two.",
                "warning",
            )
        yield from _iter_csv(export, roster, report, None, rejected)
        return
    broken = _broken_xml(export)
    for head in broken:  # perhaps attendance: a gate stops the run on file-unreadable attendance
        _xml_unreadable(report, head.name, head.line, head.problem, "nothing in it is read")
        report.count_read(head.name, 0)
    if not xml and not broken:
        raise ExportError(
            "The export has neither attendance.csv nor an Ed-Fi InterchangeStudentAttendance .xml file. "
            "Add the attendance export."
        )
    resolver = _Resolver(roster, report, rejected)
    for name in xml:
        yield from _iter_edfi(export, name, resolver, report)


def attendance_parts(export: Export, parts: int, min_bytes: int = 64 << 20) -> list[FilePart] | None:
    """attendance.csv cut at line starts into `parts` byte ranges of about equal size, for several processes.

    None when that is not safe or not worth it: a zip (no random access), a small file, Ed-Fi XML, or a file with
    quotes (a quoted field may hold a line break, so a cut could fall inside a row)."""
    if parts < 2 or export.is_zip or not export.has(ATTENDANCE_FILE):
        return None
    path = export.path_of(ATTENDANCE_FILE)
    size = path.stat().st_size
    if size < min_bytes:
        return None
    cuts = [size * i // parts for i in range(1, parts)]
    starts: list[tuple[int, int]] = []  # (byte offset of a line start, its line number)
    lines = 1
    header_end = -1
    pos = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            if b'"' in chunk:
                return None
            if header_end < 0 and (i := chunk.find(b"\n")) >= 0:
                header_end = pos + i + 1
            while cuts and cuts[0] < pos + len(chunk):
                i = chunk.find(b"\n", max(0, cuts[0] - pos))
                if i < 0:
                    break
                starts.append((pos + i + 1, lines + chunk.count(b"\n", 0, i + 1)))
                cuts.pop(0)
            lines += chunk.count(b"\n")
            pos += len(chunk)
    if header_end < 0 or len(starts) != parts - 1:
        return None
    bounds = [(header_end, 2), *starts, (size, lines)]
    throwaway = RowReport()
    return [
        FilePart(a, b, line, None if i == 0 else throwaway)
        for i, ((a, line), (b, _)) in enumerate(pairwise(bounds))
        if b > a
    ]


def _iter_csv(
    export: Export,
    roster: Roster,
    report: RowReport,
    part: FilePart | None = None,
    rejected: RejectedAttendance | None = None,
) -> Iterator[AttendanceEvent]:
    r = _Resolver(roster, report, rejected)
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
    missing = object()
    if not table.usable:
        deque(table.rows(), maxlen=0)  # reading through counts the rows and reports the missing column once
        return
    reader, base, width, regular, fix = table.reader, table.base, table.width, table.regular, table.fix_row
    prev = reader.line_num + base  # line = base + reader.line_num; base changes when a broken row is re-read
    n = 0
    try:
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


_SCHOOL_EVENT = "StudentSchoolAttendanceEvent"
_SECTION_EVENT = "StudentSectionAttendanceEvent"
_WANTED = frozenset(
    {
        "StudentUniqueId",
        "SchoolId",
        "EventDate",
        "AttendanceEventCategory",
        "AttendanceEventCategoryDescriptor",
        "EventDuration",
        "AttendanceEventReason",
    }
)


def _iter_edfi(export: Export, name: str, r: _Resolver, report: RowReport) -> Iterator[AttendanceEvent]:
    """One Ed-Fi file: the pull parser is fed line by line so each event knows the line it starts on."""
    parser = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    start_line = 0
    fields: dict[str, str] = {}
    read = sections = 0
    first_section = 0
    root: ET.Element | None = None
    add = report.add
    with export.open_binary(name) as f:
        try:
            for lineno, chunk in enumerate(f, 1):
                parser.feed(chunk)
                for ev, elem in parser.read_events():
                    local = elem.tag.rpartition("}")[2]  # type: ignore[union-attr]
                    if ev == "start":
                        depth += 1
                        if depth == 1:
                            root = elem  # type: ignore[assignment]
                        elif depth == 2:
                            start_line = lineno
                        continue
                    depth -= 1
                    if depth >= 2:
                        if local in _WANTED and local not in fields:
                            fields[local] = (elem.text or "").strip()  # type: ignore[union-attr]
                        continue
                    if depth != 1:
                        continue
                    if local == _SCHOOL_EVENT:
                        read += 1
                        event = _edfi_event(fields, r, name, start_line, add)
                        if event is not None:
                            yield event
                    elif local == _SECTION_EVENT:
                        sections += 1
                        first_section = first_section or start_line
                    fields = {}
                    elem.clear()  # type: ignore[union-attr]
                    if root is not None:
                        root.clear()  # drop the emptied children too, so memory stays flat
            parser.close()  # a file cut short raises here
        except ET.ParseError as exc:
            _xml_unreadable(report, name, *parse_problem(exc), "the events after that point are not read")
        finally:
            report.count_read(name, read + sections)
    if sections:
        add(
            name,
            first_section,
            _SECTION_EVENT,
            "section-attendance",
            f"{sections} StudentSectionAttendanceEvent elements (first at line {first_section}) "
            "are class-period "
            "attendance, not school-day attendance; not used. Export StudentSchoolAttendanceEvent.",
            "warning",
        )


def _edfi_event(
    fields: dict[str, str], r: _Resolver, file: str, line: int, add: Callable[..., None]
) -> AttendanceEvent | None:
    state_id = fields.get("StudentUniqueId", "")
    student = r.by_state_id.get(state_id)
    if student is None:
        add(
            file,
            line,
            "StudentUniqueId",
            "unknown-student",
            "No student in users.csv has this StudentUniqueId (state id); event not used.",
        )
        return None
    school = r.schools.get(fields.get("SchoolId", ""))
    if school is None:
        add(
            file,
            line,
            "SchoolId",
            "unknown-school",
            f"SchoolId '{fields.get('SchoolId', '')}' matches no school's identifier or sourcedId "
            "in orgs.csv; "
            "event not used.",
        )
        r.reject((student,), "", fields.get("EventDate", ""), file, line)
        return None
    raw = fields.get("EventDate", "")
    day = r.dates[raw] if raw in r.dates else r.day(raw)
    if day is None:
        add(
            file,
            line,
            "EventDate",
            "bad-date",
            f"EventDate '{raw}' is not an xs:date (YYYY-MM-DD); not used.",
        )
        r.reject((student,), school, raw, file, line)
        return None
    raw = fields.get("AttendanceEventCategory") or fields.get("AttendanceEventCategoryDescriptor", "")
    category = r.categories[raw] if raw in r.categories else r.category(raw)
    if category is None:
        add(
            file,
            line,
            "AttendanceEventCategory",
            "unknown-category",
            f"AttendanceEventCategory '{raw}' is not an Ed-Fi attendance category; event not used.",
        )
        r.reject((student,), school, fields.get("EventDate", ""), file, line)
        return None
    raw = fields.get("EventDuration", "")
    duration = r.durations[raw] if raw in r.durations else r.duration(raw)
    if duration is None:
        add(
            file,
            line,
            "EventDuration",
            "bad-duration",
            f"EventDuration '{raw}' is not a fraction of a day in (0, 1]; event not used.",
        )
        r.reject((student,), school, fields.get("EventDate", ""), file, line)
        return None

    raw = fields.get("AttendanceEventReason", "")
    reason = r.reasons.get(raw)
    if reason is None:
        reason = r.reason(raw, file, line, "AttendanceEventReason")
    return AttendanceEvent(student, school, day, category, duration, reason, file, line)
