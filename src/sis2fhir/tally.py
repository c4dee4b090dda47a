"""Attendance events streamed into year-to-date tallies per student x school, on one core or several.

Each event is checked against the school year, the as-of date, the student's membership at the school and the
calendar, and at most one event counts per student, school and day (a second one is a conflict to report, not to
sum). Memory: a few integers and a bitmask of school days per student x school, never the rows; a student x school
with absences also has the eleven bitmasks of absence_days.py (the weight and kind of each day's absence), from
which the monthly tallies, the streaks and the recent absences are read at the end.

A large attendance.csv in a folder export is cut into byte ranges at line starts and tallied in one process per
core (fork: the roster is shared, not copied). Tallies of the parts add up; the only thing a part cannot see is a
duplicate whose first row lies in an earlier part, so those few student-days are looked up again afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sis2fhir.absence_days import DayFacts, DayMasks, absorb_masks, add_day, facts_of, new_masks
from sis2fhir.engine import (
    CONFLICTING_EVENT,
    NOT_A_SCHOOL_DAY,
    NOT_ENROLLED,
    OUTSIDE_MEMBERSHIP,
    OUTSIDE_YEAR,
    PRESENCE,
    Key,
    MeasuredAttendance,
    Rules,
    attendance_files,
    day_offset,
    is_positive,
    report_undated,
)
from sis2fhir.measure import (
    OSS,
    AbsenceTally,
    AttendanceSummary,
    day_hundredths,
    summarize,
)
from sis2fhir.parallel import can_fork, fork_map, workers_wanted
from sis2fhir.read.attendance import ATTENDANCE_FILE, attendance_parts, iter_attendance
from sis2fhir.read.csvfile import FilePart
from sis2fhir.read.export import Export
from sis2fhir.records import AttendanceEvent, RejectedAttendance, Roster
from sis2fhir.report import RowReport
from sis2fhir.transitions import projected_rate
from sis2fhir.withhold import withhold_incomplete
from sis2fhir.year_facts import YearFacts, school_days_of

__all__ = ["Key", "Rules", "StreamingTally", "Tallies", "measured_of", "summaries_of", "tally_attendance"]


@dataclass(slots=True)
class Tallies:
    tallies: dict[Key, AbsenceTally] = field(default_factory=dict)
    seen: dict[Key, int] = field(default_factory=dict)  # bitmask of school-year days with a counted event
    days: dict[Key, DayMasks] = field(default_factory=dict)  # which days were absent, how much, what kind
    # the facts of the year already read from a student x school's days (year_facts.py): its masks are not kept
    facts: dict[Key, DayFacts] = field(default_factory=dict)
    derived_days: dict[str, set[int]] = field(default_factory=dict)  # school -> days seen (no calendar.csv)
    # for the plausibility gates: rows counted per school and day offset (schools x days, never rows), rows that
    # say In Attendance/Present, and per student x school the hundredths absent up to `Rules.compare_until`
    rows_by_school: dict[str, dict[int, int]] = field(default_factory=dict)
    presence_rows: int = 0
    absent_until: dict[Key, int] = field(default_factory=dict)
    outside_year: int = 0
    outside_listed: int = 0  # of them, reported one by one (at most OUTSIDE_LISTED per file)
    after_as_of: int = 0
    events: int = 0
    file: str = ""
    # the students (x schools) of rejected rows: their attendance is withheld (withhold.py); None: not noted
    rejected: RejectedAttendance | None = None

    @property
    def rows_counted(self) -> int:
        """Rows counted for a school day of the year up to the as-of date (duplicates and rejected rows not)."""
        return sum(sum(days.values()) for days in self.rows_by_school.values())

    def students_absent(self) -> dict[str, int]:
        """Per school: students with any absence counted."""
        absent: dict[str, int] = {}
        for (_, school), t in self.tallies.items():
            if t.absent > 0:
                absent[school] = absent.get(school, 0) + 1
        return absent

    def consume(self, events: Iterable[AttendanceEvent], rules: Rules, report: RowReport) -> None:
        policy, memberships, calendar_days, year = rules.policy, rules.memberships, rules.calendar_days, rules.year
        derived_days, tallies, seen, absent_days = self.derived_days, self.tallies, self.seen, self.days
        rows_by_school, absent_until, until = self.rows_by_school, self.absent_until, rules.compare_until
        may_be_absent = policy.absence_categories
        presence = 0
        add = report.add
        n = 0
        offsets: dict[date, int] = {}  # day -> offset in the school year; OUTSIDE_YEAR or AFTER_AS_OF
        for student, school, day, category, duration, reason, file, line in events:
            n += 1
            offset = offsets.get(day)
            if offset is None:
                offset = offsets[day] = day_offset(rules, day)
            if offset < 0:
                if offset == OUTSIDE_YEAR:
                    self.outside_year += 1
                    if self.outside_listed < OUTSIDE_LISTED:  # each row used or reported; the rest summed up
                        self.outside_listed += 1
                        add(
                            file,
                            line,
                            "date",
                            OUTSIDE_CODE,
                            f"Row dated {day}, outside the school year {year.start} to {year.end}; not counted "
                            "(an export of several school years has such rows).",
                            "warning",
                        )
                else:
                    self.after_as_of += 1
                self.file = file
                continue
            key = (student, school)
            m = memberships.get(key)
            if m is None:
                add(file, line, *NOT_ENROLLED)
                continue
            if day < m.begin or day > m.end:
                column, code, message = OUTSIDE_MEMBERSHIP
                add(file, line, column, code, message.format(begin=m.begin, end=m.end))
                continue
            if calendar_days is not None:
                days = calendar_days.get(school)
                if days is None or offset not in days:
                    add(file, line, *NOT_A_SCHOOL_DAY)
                    continue
            else:
                ds = derived_days.get(school)
                if ds is None:
                    ds = derived_days[school] = set()
                ds.add(offset)
            bit = 1 << offset
            mask = seen.get(key, 0)
            if mask & bit:
                add(file, line, *CONFLICTING_EVENT)
                continue
            seen[key] = mask | bit
            per_day = rows_by_school.get(school)
            if per_day is None:
                per_day = rows_by_school[school] = {}
            per_day[offset] = per_day.get(offset, 0) + 1
            if category in may_be_absent or reason == OSS:  # else absence_weight is 0: most rows stop here
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = AbsenceTally()
                w = tally.add(category, day_hundredths(duration), reason, policy)
                if w:
                    masks = absent_days.get(key)
                    if masks is None:
                        masks = absent_days[key] = new_masks()
                    add_day(masks, offset, w, category, reason)
                    if until is not None and offset <= until:
                        absent_until[key] = absent_until.get(key, 0) + w
            elif category in PRESENCE:
                presence += 1
        self.events += n
        self.presence_rows += presence

    def absorb(self, later: Tallies) -> dict[Key, int]:
        """Add a later part's tallies; return the student-days both counted (later's rows there were duplicates)."""
        overlaps: dict[Key, int] = {}
        for key, mask in later.seen.items():
            mine = self.seen.get(key, 0)
            if mine & mask:
                overlaps[key] = mine & mask
            self.seen[key] = mine | mask
        for key, t in later.tallies.items():
            mine_t = self.tallies.get(key)
            if mine_t is None:
                self.tallies[key] = t
            else:
                _add(mine_t, t, +1)
        for key, masks in later.days.items():
            mine_m = self.days.get(key)
            if mine_m is None:
                self.days[key] = masks
            else:  # on a day both parts counted, this part's row is the one that counts: undo has nothing to do
                absorb_masks(mine_m, masks, overlaps.get(key, 0))
        self.facts.update(later.facts)  # the columnar engine's: its students x schools are not the Python tally's
        for school, days in later.derived_days.items():
            self.derived_days.setdefault(school, set()).update(days)
        for school, counts in later.rows_by_school.items():
            mine_counts = self.rows_by_school.setdefault(school, {})
            for offset, n in counts.items():
                mine_counts[offset] = mine_counts.get(offset, 0) + n
        for key, h in later.absent_until.items():
            self.absent_until[key] = self.absent_until.get(key, 0) + h
        self.presence_rows += later.presence_rows
        self.outside_year += later.outside_year
        self.outside_listed += later.outside_listed
        self.after_as_of += later.after_as_of
        self.events += later.events
        self.file = self.file or later.file
        if later.rejected is not None:
            if self.rejected is None:
                self.rejected = later.rejected
            else:
                self.rejected.absorb(later.rejected)
        return overlaps


OUTSIDE_LISTED = 1000  # rows outside the school year reported by line, per file; the rest in one summary line
OUTSIDE_CODE = "outside-school-year"


def _add(into: AbsenceTally, t: AbsenceTally, sign: int) -> None:
    into.absent += sign * t.absent
    into.excused += sign * t.excused
    into.unexcused += sign * t.unexcused
    into.illness += sign * t.illness
    into.oss += sign * t.oss


def _tally_part(job: tuple[Export, Roster, Rules], part: FilePart) -> tuple[Tallies, RowReport]:
    export, roster, rules = job
    report = RowReport()
    t = Tallies(rejected=rules.rejected())
    t.consume(iter_attendance(export, roster, report, part, t.rejected), rules, report)
    return t, report


def _keep_listed(t: Tallies, report: RowReport, room: int) -> None:
    """Keep only the first `room` rows outside the school year that a later part reported one by one."""
    keep = max(0, min(room, t.outside_listed))
    if keep == t.outside_listed:
        return
    seen = 0

    def kept(code: str) -> bool:
        nonlocal seen
        if code != OUTSIDE_CODE:
            return True
        seen += 1
        return seen <= keep

    report.issues[:] = [i for i in report.issues if kept(i.code)]
    t.outside_listed = keep


def _undo_duplicates(
    export: Export,
    roster: Roster,
    rules: Rules,
    part: FilePart,
    overlaps: dict[Key, int],
    into: Tallies,
    report: RowReport,
) -> None:
    """Take back what `part` counted on student-days an earlier part had already counted, and report those rows.

    This reads `part` again, and only a part whose tallies overlap an earlier part's (a duplicate across a cut,
    rare in real exports) is read again. Not reading it would take, per counted student-day, the row's line and
    what it added (category, duration, reason): that is per-row memory, and a duplicate may be anywhere in a part
    (a correction batch appended to the file), so keeping only the first rows of each part would not do. The day
    masks (absence_days.py) need nothing taken back: `Tallies.absorb` kept the earlier part's bits on those days."""
    base, policy = rules.base, rules.policy
    done: set[tuple[Key, int]] = set()
    for ev in iter_attendance(export, roster, RowReport(), part):
        key = (ev.student_sourced_id, ev.school_sourced_id)
        mask = overlaps.get(key)
        if mask is None:
            continue
        offset = ev.day.toordinal() - base
        if offset < 0 or not (mask >> offset) & 1 or (key, offset) in done:  # < 0: before the year, not counted
            continue
        done.add((key, offset))  # the first such row in this part is the one it counted
        report.add(ev.file, ev.line, *CONFLICTING_EVENT)
        per_day = into.rows_by_school[ev.school_sourced_id]
        per_day[offset] -= 1
        if not per_day[offset]:
            del per_day[offset]  # as if one process had counted: no entry, not a zero
        if ev.category in policy.absence_categories or ev.reason == OSS:
            t = AbsenceTally()
            t.add(ev.category, day_hundredths(ev.duration), ev.reason, policy)
            _add(into.tallies[key], t, -1)
            if rules.compare_until is not None and offset <= rules.compare_until and t.absent:
                into.absent_until[key] -= t.absent
                if not into.absent_until[key]:
                    del into.absent_until[key]
        elif ev.category in PRESENCE:
            into.presence_rows -= 1


def tally_attendance(
    export: Export, roster: Roster, rules: Rules, report: RowReport, workers: int = 0, min_bytes: int = 64 << 20
) -> Tallies:
    """All attendance events of the export, tallied. `workers`: processes to use (0: one per core); files under
    `min_bytes` are read in this process (starting workers would cost more than it saves)."""
    workers = workers_wanted(workers)
    parts = attendance_parts(export, workers, min_bytes) if workers > 1 and can_fork() else None
    if not parts or len(parts) < 2:
        t = Tallies(rejected=rules.rejected())
        t.consume(iter_attendance(export, roster, report, None, t.rejected), rules, report)
        return t

    results = list(fork_map(_tally_part, (export, roster, rules), parts, len(parts)))
    total, first_report = results[0]
    report.extend(first_report)
    for part, (t, part_report) in zip(parts[1:], results[1:], strict=True):
        _keep_listed(t, part_report, OUTSIDE_LISTED - total.outside_listed)  # the cap holds for the whole file
        report.extend(part_report)
        overlaps = total.absorb(t)
        if overlaps:
            _undo_duplicates(export, roster, rules, part, overlaps, total, report)
    return total


def summaries_of(tallies: Tallies, rules: Rules, days_by_school: dict[str, list[date]]) -> list[AttendanceSummary]:
    """A summary per student x school with a school day in membership up to the as-of date, with its monthly tallies,
    streaks, recent absences and year-end projection (absence_days.py, transitions.py); `tallies.days` and
    `tallies.facts` are used up."""
    year, policy, base = rules.year, rules.policy, rules.base
    last_day = min(rules.as_of, year.end)
    # most memberships share their school, begin and end: what those decide is made once per call (year_facts.py)
    year_facts = YearFacts(rules, days_by_school)
    membership, schools = year_facts.membership, year_facts.schools
    no_absence = AbsenceTally()
    days_of, facts_made, tallies_of = tallies.days.pop, tallies.facts.pop, tallies.tallies.get
    year_of, start = year.year, year.start
    summaries = []
    for (student, school), m in rules.memberships.items():
        dim, span, left = membership(school, m.begin, m.end)
        if span is None:
            continue  # not (yet) in membership on any school day of this year
        key = (student, school)
        tally = tallies_of(key) or no_absence
        facts = facts_made(key, None)
        if facts is None:
            facts = facts_of(days_of(key, None), schools[school], span, base)
        projected = projected_rate(dim, tally.absent, facts.window_days, facts.window_absent_h, left, policy)
        summaries.append(
            summarize(
                student,
                school,
                year_of,
                start,
                last_day,
                dim,
                tally,
                policy,
                months=facts.months,
                absence_runs=facts.absence_runs,
                run_is_running=facts.running,
                window_days=facts.window_days,
                window_absent_h=facts.window_absent_h,
                days_left=left,
                projected_rate=projected,
            )
        )
    return summaries


@dataclass(frozen=True, slots=True)
class StreamingTally:
    """The streaming engine: events read once (on `workers` cores; 0: one per core) into tallies per student x
    school; files under `min_bytes` are read in one process."""

    workers: int = 0
    min_bytes: int = 64 << 20

    def measure(self, export: Export, roster: Roster, rules: Rules, report: RowReport) -> MeasuredAttendance:
        tallies = tally_attendance(export, roster, rules, report, self.workers, self.min_bytes)
        return measured_of(tallies, export, rules, report, "streaming")


def measured_of(tallies: Tallies, export: Export, rules: Rules, report: RowReport, engine: str) -> MeasuredAttendance:
    """An engine's result from its tallies: the summaries, and the students whose attendance is withheld."""
    report_undated(report, tallies, rules)
    school_days = school_days_of(rules, tallies.derived_days)
    every = summaries_of(tallies, rules, school_days)
    files = attendance_files(export, rules.style)
    positive = is_positive(rules.style, tallies.presence_rows, tallies.rows_counted)
    kept, held = withhold_incomplete(
        every, tallies.rejected, tallies.seen, positive, (files or [ATTENDANCE_FILE])[0], report
    )
    return MeasuredAttendance(every, kept, held, school_days, tallies, files, engine)
