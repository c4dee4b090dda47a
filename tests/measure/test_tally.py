"""Tallying attendance on several cores: how the file is cut, and damaged or rejected rows next to the cuts (the
same results on any number of cores, duplicates included, are in the engine contract: test_engine_contract.py)."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from sis2fhir.policy import PRESETS
from sis2fhir.read.attendance import attendance_parts
from sis2fhir.read.calendar import read_calendar
from sis2fhir.read.export import open_export
from sis2fhir.read.oneroster import read_roster
from sis2fhir.report import RowReport
from sis2fhir.tally import Rules, tally_attendance
from tests.support import paths

GENERATOR = paths.GENERATOR
AS_OF = date(2026, 6, 12)


@pytest.fixture(scope="module")
def district_with_duplicates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dups") / "district"
    subprocess.run([sys.executable, str(GENERATOR), "--students", "30", "--out", str(out)], check=True,
                   capture_output=True)  # fmt: skip
    path = out / "attendance.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0])
    # copies of early rows appended at the end (so in the last part), with the opposite category: an absence
    # counted again would raise the totals; a presence would hide an absence
    extra = []
    for r in rows[:400:7]:
        dup = dict(r)
        dup["category"] = "Present" if "Absence" in r["category"] else "Unexcused Absence"
        extra.append(dup)
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=fields).writerows(extra)
    return out


def tally(path: Path, workers: int) -> tuple[dict, list[tuple[int, str]], int]:
    report = RowReport()
    export = open_export(path)
    roster = read_roster(export, report)
    calendar = read_calendar(export, report)
    year = roster.school_years[0]
    base = year.start.toordinal()
    rules = Rules(year, AS_OF, PRESETS["essa"], roster.memberships,
                  {s: {d.toordinal() - base for d in ds} for s, ds in (calendar or {}).items()})  # fmt: skip
    t = tally_attendance(export, roster, rules, report, workers=workers, min_bytes=1)
    numbers = {k: (v.absent, v.excused, v.unexcused, v.illness, v.oss) for k, v in t.tallies.items()}
    issues = sorted((i.line, i.code) for i in report.issues if i.line > 0)
    return numbers, issues, t.events


def test_the_file_is_really_cut_in_parts(district_with_duplicates: Path) -> None:
    parts = attendance_parts(open_export(district_with_duplicates), 3, min_bytes=1)
    assert parts is not None and len(parts) == 3
    assert parts[0].line == 2 and parts[1].line > parts[0].line


# several workers count exactly what one counts, the gates' counts included: tests/measure/test_engine_contract.py


def test_a_file_with_quotes_is_not_cut(tmp_path: Path, district_with_duplicates: Path) -> None:
    import shutil

    copy = tmp_path / "quoted"
    shutil.copytree(district_with_duplicates, copy)
    with (copy / "attendance.csv").open("a") as f:
        f.write('"stu-0000001",,org-school-01,2025-09-02,Present,1,"a, quoted reason"\n')
    assert attendance_parts(open_export(copy), 2, min_bytes=1) is None


def test_damaged_rows_next_to_the_cuts_cost_only_their_rows_on_any_number_of_cores(
    tmp_path: Path, district_with_duplicates: Path
) -> None:
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(district_with_duplicates, copy)
    path = copy / "attendance.csv"
    parts = attendance_parts(open_export(copy), 3, min_bytes=1)
    assert parts is not None
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = set()
    for part in parts[1:]:  # the last row before each cut and the first after it
        for line in (part.line - 1, part.line):
            bad = b"\xe9" if line % 2 else b"\x00"
            lines[line - 1] = lines[line - 1][:3] + bad + lines[line - 1][4:]  # same length: the same cuts
            damaged.add(line)
    path.write_bytes(b"".join(lines))
    cuts = attendance_parts(open_export(copy), 3, min_bytes=1)
    assert [(p.start, p.line) for p in cuts or []] == [(p.start, p.line) for p in parts]  # the same cuts
    one = tally(copy, 1)
    many = tally(copy, 3)
    assert many == one
    assert {line for line, code in one[1] if code in ("invalid-utf8", "nul-byte")} == damaged
    clean = tally(district_with_duplicates, 1)
    assert one[2] == clean[2] - len(damaged)  # every other event is read


def test_the_students_whose_attendance_is_withheld_are_the_same_on_any_number_of_cores(
    tmp_path: Path, district_with_duplicates: Path
) -> None:
    """Rows rejected in every part (damaged lines next to the cuts, a bad category, an unknown school): the students
    noted for withholding, their counts and first lines merge to what one process notes."""
    import shutil

    copy = tmp_path / "rejected"
    shutil.copytree(district_with_duplicates, copy)
    path = copy / "attendance.csv"
    parts = attendance_parts(open_export(copy), 3, min_bytes=1)
    assert parts is not None
    lines = path.read_bytes().splitlines(keepends=True)
    for part in parts[1:]:
        for line in (part.line - 1, part.line):  # a Latin-1 byte in the reason, next to each cut
            lines[line - 1] = lines[line - 1].rstrip(b"\r\n") + b"\xe9\n"
    for line in (parts[0].line + 5, parts[1].line + 7, parts[2].line + 9):
        lines[line - 1] = lines[line - 1].replace(b",Present,", b",Presnt,").replace(b",Unexcused Absence,", b",X,")
    lines[parts[2].line + 11 - 1] = lines[parts[2].line + 11 - 1].replace(b"org-school-0", b"org-school-9")
    path.write_bytes(b"".join(lines))

    def noted(workers: int) -> dict:
        report = RowReport()
        export = open_export(copy)
        roster = read_roster(export, report)
        calendar = read_calendar(export, report) or {}
        year = roster.school_years[0]
        base = year.start.toordinal()
        rules = Rules(year, AS_OF, PRESETS["essa"], roster.memberships,
                      {s: {d.toordinal() - base for d in ds} for s, ds in calendar.items()})  # fmt: skip
        t = tally_attendance(export, roster, rules, report, workers=workers, min_bytes=1)
        assert t.rejected is not None
        return t.rejected.rows

    one = noted(1)
    rows = {line: row.decode("latin-1").split(",") for line, row in enumerate(lines, 1)}
    damaged = {p.line - 1 for p in parts[1:]} | {p.line for p in parts[1:]}
    assert {student for student, _ in one} >= {rows[n][0] for n in damaged}
    assert sum(n for n, _, _ in one.values()) == len(damaged) + 4
    assert any(school == "" for _, school in one)  # the unknown school: any school of the student
    assert noted(2) == one
    assert noted(3) == one


@pytest.mark.parametrize("workers", [1, 3])
def test_rows_outside_the_school_year_are_reported_by_line_up_to_the_cap_on_any_number_of_cores(
    tmp_path: Path, district_with_duplicates: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import sis2fhir.tally

    folder = Path(shutil.copytree(district_with_duplicates, tmp_path / "d"))
    path = folder / "attendance.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    moved = list(range(0, len(rows), 40))  # a row of the year before, every 40 rows, all through the file
    for n in moved:
        rows[n]["date"] = str(date.fromisoformat(rows[n]["date"]).replace(year=2024))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    monkeypatch.setattr(sis2fhir.tally, "OUTSIDE_LISTED", 7)  # forked workers see it too
    report = RowReport()
    export = open_export(folder)
    roster = read_roster(export, report)
    year = roster.school_years[0]
    rules = Rules(year, AS_OF, PRESETS["essa"], roster.memberships, None)
    t = tally_attendance(export, roster, rules, report, workers=workers, min_bytes=1)
    listed = [(i.line, i.column, i.severity) for i in report.issues if i.code == "outside-school-year"]
    assert listed == [(n + 2, "date", "warning") for n in moved[:7]]  # the first ones in the file
    assert (t.outside_year, t.outside_listed) == (len(moved), 7)
