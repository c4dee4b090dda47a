"""Ed-Fi InterchangeStudentAttendance XML: finding the files and reading their school-day attendance events."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

from sis2fhir.read.attendance_values import Resolver
from sis2fhir.read.export import Export
from sis2fhir.read.xmlhead import XmlHead, is_edfi_namespace, parse_problem, read_head
from sis2fhir.records import AttendanceEvent
from sis2fhir.report import RowReport

EDFI_ROOT = "InterchangeStudentAttendance"
EDFI_DESCRIPTOR = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#"


def edfi_files(export: Export) -> list[str]:
    """The export's XML files whose root element is InterchangeStudentAttendance in an Ed-Fi namespace."""
    return [h.name for h in xml_heads(export) if h.root == EDFI_ROOT and not h.problem]


def xml_heads(export: Export) -> list[XmlHead]:
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


def broken_xml(export: Export) -> list[XmlHead]:
    """XML files that cannot be read as far as their root element: perhaps the Ed-Fi attendance, unreadable."""
    return [h for h in xml_heads(export) if h.problem]


def xml_unreadable(report: RowReport, name: str, line: int, what: str, before: str) -> None:
    report.add(name, line, "", "file-unreadable", f"{name} {what}; {before}. Export the file again.")


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


def iter_edfi(export: Export, name: str, r: Resolver, report: RowReport) -> Iterator[AttendanceEvent]:
    """One Ed-Fi file: the pull parser is fed line by line so each event knows the line it starts on."""
    parser: ET.XMLPullParser[Any] = ET.XMLPullParser(events=("start", "end"))
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
                for ev, elem in parser.read_events():  # type: ignore[misc]  # typeshed: events of several shapes
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
            line, what = parse_problem(exc)
            xml_unreadable(report, name, line, what, "the events after that point are not read")
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
    fields: dict[str, str], r: Resolver, file: str, line: int, add: Callable[..., None]
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
