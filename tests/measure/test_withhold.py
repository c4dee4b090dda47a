"""Fail closed for one student: rejected attendance rows withhold that student's summary, nobody else's.

Each kind of rejected row is put into a copy of the example district (helpers of test_read_damage) and the copy is
synced through the CLI to an NDJSON folder: the student of the row gets no Observation (and, having one school,
nothing at all), is reported once as `attendance-withheld`, and every other NDJSON line is the clean run's.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from sis2fhir.cli import app
from tests.read.test_read_damage import EXAMPLE, damaged, set_field

AS_OF = "2026-03-31"
GENERATOR = EXAMPLE.parent / "generate_district.py"
runner = CliRunner()

# attendance.csv columns: 0 studentSourcedId, 1 studentIdentifier, 2 schoolSourcedId, 3 date, 4 category,
# 5 duration, 6 reason


@dataclasses.dataclass
class Run:
    code: int
    output: str
    lines: dict[str, list[bytes]]  # recipient/Type.ndjson -> its lines
    report: list[dict[str, str]]  # rows-report.csv

    def issues(self, code: str) -> list[dict[str, str]]:
        return [i for i in self.report if i["code"] == code]

    def observed(self) -> set[str]:
        """State ids of the students with an Observation in some recipient's folder."""
        return {state_id(line) for name, ls in self.lines.items() if name.endswith("Observation.ndjson") for line in ls}


def sync(folder: Path, out: Path, *extra: str) -> Run:
    res = runner.invoke(app, ["sync", str(folder), "--as-of", AS_OF, "--out", str(out), *extra])
    return collect(res.exit_code, res.output, out)


def collect(code: int, output: str, out: Path) -> Run:
    lines = {p.relative_to(out).as_posix(): p.read_bytes().splitlines() for p in sorted(out.glob("*/*.ndjson"))}
    with (out / "rows-report.csv").open(newline="", encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    return Run(code, output, lines, report)


def state_id(line: bytes) -> str:
    """The state student id an NDJSON line is about (Observation.subject, Consent.patient, the Patient itself);
    "" for an Organization (about no student)."""
    res = orjson.loads(line)
    if res["resourceType"] == "Organization":
        return ""
    if res["resourceType"] == "Patient":
        return res["identifier"][0]["value"]
    return (res.get("subject") or res["patient"])["identifier"]["value"]


@dataclasses.dataclass(frozen=True)
class Pick:
    """A student with one school and an Observation in the clean run, and one of their rows before the as-of date."""

    sourced_id: str
    state_id: str
    line: int  # a line of attendance.csv with one of their rows


def attendance_rows(folder: Path = EXAMPLE) -> list[list[str]]:
    with (folder / "attendance.csv").open(newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = sync(EXAMPLE, tmp_path_factory.mktemp("clean") / "out")
    assert run.code == 0, run.output
    return run


@pytest.fixture(scope="module")
def picks(clean: Run) -> list[Pick]:
    schools: dict[str, set[str]] = {}
    rows = attendance_rows()
    for row in rows[1:]:
        schools.setdefault(row[0], set()).add(row[2])
    found: dict[str, Pick] = {}
    observed = clean.observed()
    for line, row in enumerate(rows[1:], 2):
        sid, state = row[0], row[1]
        later = rows[line + 20 - 1] if line + 20 <= len(rows) else []  # a row in the middle of their rows
        if state in observed and schools[sid] == {"org-school-01"} and later[:1] == [sid] and later[3] <= AS_OF:
            found.setdefault(sid, Pick(sid, state, line + 20))
    assert len(found) >= 2
    return list(found.values())[:2]  # two students of one school, with one school each


def held(lines: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """What a folder holds: its non-empty files; Organization lines in any order (the first item that carried an
    Organization placed it, and a withheld student's item is not there)."""
    return {k: sorted(v) if k.endswith("/Organization.ndjson") else v for k, v in lines.items() if v}


def without(clean: Run, *state_ids: str) -> dict[str, list[bytes]]:
    """The clean run's NDJSON lines, less those about these students (files left empty dropped)."""
    kept = {name: [line for line in ls if state_id(line) not in state_ids] for name, ls in clean.lines.items()}
    return {name: ls for name, ls in kept.items() if ls}


def assert_withheld(run: Run, clean: Run, line: int, *students: Pick) -> None:
    """Only these students' lines are gone; each is reported once as withheld, at the rejected row's line."""
    assert run.code == 3, run.output  # rows rejected
    assert {p.state_id for p in students} <= clean.observed()  # they had an Observation in the clean run
    assert {p.state_id for p in students}.isdisjoint(run.observed())
    assert held(run.lines) == held(without(clean, *(p.state_id for p in students)))
    withheld = run.issues("attendance-withheld")
    assert sorted(i["message"].split("'")[1] for i in withheld) == sorted(p.sourced_id for p in students)
    for i in withheld:
        assert (i["file"], i["line"], i["column"], i["severity"]) == (
            "attendance.csv",
            str(line),
            "studentSourcedId",
            "warning",
        )
        assert "1 of their attendance rows was rejected" in i["message"]
        assert "once the rows are fixed" in i["message"]
        assert not any(p.state_id in i["message"] for p in students)  # by sourcedId only
    said = re.search(r"students withheld \(attendance rows rejected\)\s*│\s*(\d+)", run.output)
    assert said is not None and int(said.group(1)) == len(students), run.output


REJECTED: dict[str, tuple[int, bytes, str]] = {  # kind -> (column, new value, the code reported at the row)
    "bad-date": (3, b"2026-02-30", "bad-date"),
    "unknown-category": (4, b"Presnt", "unknown-category"),
    "bad-duration": (5, b"1.5", "bad-duration"),
    "unknown-school": (2, b"org-school-99", "unknown-school"),
    "latin-1": (6, b"ill\xe9", "invalid-utf8"),
    "nul": (6, b"ill\x00", "nul-byte"),
    "stray-quote": (6, b'"sick', "unclosed-quote"),
    "ragged-row": (6, b"ill,one field too many", "ragged-row"),
    "oversized-field": (6, b"y" * 140_000, "field-too-large"),
    "overlong-line": (6, b"z" * (3 << 20), "field-too-large"),
    "latin-1-in-the-student-id": (0, b"stu-\xe90", "invalid-utf8"),  # the state id still tells whose row it is
}


@pytest.mark.parametrize("kind", list(REJECTED))
def test_a_rejected_row_withholds_its_student_and_nobody_else(
    tmp_path: Path, clean: Run, picks: list[Pick], kind: str
) -> None:
    column, value, code = REJECTED[kind]
    a = picks[0]
    run = sync(damaged(tmp_path, "attendance.csv", set_field(a.line, column, value)), tmp_path / "out")
    assert [(i["line"], i["severity"]) for i in run.issues(code)] == [(str(a.line), "error")]
    assert_withheld(run, clean, a.line, a)


def test_a_row_naming_two_students_withholds_both(tmp_path: Path, clean: Run, picks: list[Pick]) -> None:
    a, b = picks
    run = sync(damaged(tmp_path, "attendance.csv", set_field(a.line, 1, b.state_id.encode())), tmp_path / "out")
    assert [i["line"] for i in run.issues("student-mismatch")] == [str(a.line)]
    assert_withheld(run, clean, a.line, a, b)  # it cannot be told whose day it is


def test_a_row_whose_student_cannot_be_told_withholds_nothing(tmp_path: Path, clean: Run, picks: list[Pick]) -> None:
    a = picks[0]

    def edit(lines: list[bytes]) -> None:  # both ids damaged: studentSourcedId and studentIdentifier
        lines[a.line - 1] = b"stu-\xe90,1\xe9," + lines[a.line - 1].split(b",", 2)[2]

    run = sync(damaged(tmp_path, "attendance.csv", edit), tmp_path / "out")
    assert run.code == 3
    assert [i["line"] for i in run.issues("invalid-utf8")] == [str(a.line)]  # reported as before
    assert run.issues("attendance-withheld") == []
    assert a.state_id in run.observed()


def test_a_rejected_row_after_the_as_of_date_withholds_nothing(tmp_path: Path, clean: Run, picks: list[Pick]) -> None:
    a = picks[0]
    rows = attendance_rows()
    line = next(n for n, r in enumerate(rows, 1) if n > 1 and r[0] == a.sourced_id and r[3] > AS_OF)
    run = sync(damaged(tmp_path, "attendance.csv", set_field(line, 4, b"Presnt")), tmp_path / "out")
    assert [i["line"] for i in run.issues("unknown-category")] == [str(line)]
    assert run.issues("attendance-withheld") == []
    assert {k: v for k, v in run.lines.items() if v} == clean.lines  # the row would not have counted anyway


def test_several_rejected_rows_of_one_student_are_reported_once_with_their_count(
    tmp_path: Path, clean: Run, picks: list[Pick]
) -> None:
    a = picks[0]

    def edit(lines: list[bytes]) -> None:
        set_field(a.line, 4, b"Presnt")(lines)
        set_field(a.line + 1, 6, b"ill\xe9")(lines)
        set_field(a.line + 2, 3, b"31/12/2025")(lines)

    run = sync(damaged(tmp_path, "attendance.csv", edit), tmp_path / "out")
    [issue] = run.issues("attendance-withheld")
    assert issue["line"] == str(a.line)
    assert "3 of their attendance rows were rejected" in issue["message"]
    assert held(run.lines) == held(without(clean, a.state_id))


def test_the_real_command_exits_3_and_sends_nothing_for_the_student(
    tmp_path: Path, clean: Run, picks: list[Pick]
) -> None:
    a = picks[0]
    folder = damaged(tmp_path, "attendance.csv", set_field(a.line, 6, b"ill\xe9"))
    exe = Path(sys.executable).with_name("sis2fhir")
    out = tmp_path / "out"
    done = subprocess.run(
        [str(exe), "sync", str(folder), "--as-of", AS_OF, "--out", str(out)], capture_output=True, text=True
    )
    run = collect(done.returncode, done.stdout, out)
    assert "Traceback" not in done.stderr
    assert_withheld(run, clean, a.line, a)


# --- positive attendance: a student enrolled on school days passed, with no row at all ---


def test_a_student_without_any_row_in_a_positive_file_is_withheld_not_sent_as_never_absent(
    tmp_path: Path, clean: Run, picks: list[Pick]
) -> None:
    a = picks[0]

    def edit(lines: list[bytes]) -> None:
        lines[:] = [line for line in lines if not line.startswith(a.sourced_id.encode() + b",")]

    run = sync(damaged(tmp_path, "attendance.csv", edit), tmp_path / "out")
    assert run.code == 0, run.output  # no row was rejected: a warning
    [issue] = run.issues("attendance-missing-for-student")
    assert (issue["file"], issue["line"], issue["severity"]) == ("attendance.csv", "0", "warning")
    assert f"'{a.sourced_id}'" in issue["message"] and a.state_id not in issue["message"]
    days = int(re.search(r"on (\d+) school days", issue["message"]).group(1))  # type: ignore[union-attr]
    school_days = {r[3] for r in attendance_rows() if r[0] == a.sourced_id and r[3] <= AS_OF}
    assert days == len(school_days)  # a positive file has a row for each of their school days
    assert a.state_id not in run.observed()
    assert held(run.lines) == held(without(clean, a.state_id))


# --- Ed-Fi XML: a rejected event of a known student ---


@pytest.fixture(scope="module")
def edfi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    folder = tmp_path_factory.mktemp("edfi") / "district"
    subprocess.run([sys.executable, str(GENERATOR), "--students", "30", "--attendance-format", "edfi",
                    "--out", str(folder)], check=True, capture_output=True)  # fmt: skip
    run = sync(folder, folder.parent / "out")
    assert run.code == 0, run.output
    return folder, run


def edfi_field(event: str, name: str) -> str:
    found = re.search(rf"<{name}>([^<]*)<", event)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("<EventDate>2025-10-", "<EventDate>2025-13-", "bad-date"),
        ("#In Attendance<", "#Attending<", "unknown-category"),
        ("<SchoolId>480010001</SchoolId></SchoolIdentity></SchoolReference>\n",
         "<SchoolId>999</SchoolId></SchoolIdentity></SchoolReference>\n", "unknown-school"),
    ],
    ids=["bad-date", "unknown-category", "unknown-school"],
)  # fmt: skip
def test_a_rejected_ed_fi_event_withholds_its_student(
    tmp_path: Path, edfi: tuple[Path, Run], old: str, new: str, code: str
) -> None:
    source, clean_run = edfi
    folder = Path(shutil.copytree(source, tmp_path / "district"))
    xml = folder / "StudentAttendance.xml"
    text = xml.read_text()
    events = text.split("</StudentSchoolAttendanceEvent>")
    schools: dict[str, set[str]] = {}
    for ev in events[:-1]:
        schools.setdefault(edfi_field(ev, "StudentUniqueId"), set()).add(edfi_field(ev, "SchoolId"))
    observed = clean_run.observed()
    i = next(
        n
        for n, ev in enumerate(events[:-1])
        if old in ev
        and edfi_field(ev, "StudentUniqueId") in observed
        and len(schools[edfi_field(ev, "StudentUniqueId")]) == 1
        and date.fromisoformat(edfi_field(ev, "EventDate")) <= date.fromisoformat(AS_OF)
    )
    student = edfi_field(events[i], "StudentUniqueId")
    events[i] = events[i].replace(old, new, 1)
    xml.write_text("</StudentSchoolAttendanceEvent>".join(events))
    run = sync(folder, tmp_path / "out")
    assert run.code == 3, run.output
    [rejected] = run.issues(code)
    [withheld] = run.issues("attendance-withheld")
    assert (withheld["file"], withheld["line"]) == ("StudentAttendance.xml", rejected["line"])
    assert student not in run.observed()
    assert held(run.lines) == held(without(clean_run, student))
