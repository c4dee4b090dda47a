"""The sanity gates through the real CLI and a real SQLite store: unusable or implausible attendance stops the run
with exit 1 before anything is queued or written, an operator's --accept-change lets a deliberate change through
and is recorded, and `sis2fhir check` gives the same verdicts without storing anything."""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from sis2fhir.cli import app
from tests.support import paths

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
GENERATOR = ROOT / "examples" / "generate_district.py"
AS_OF = "2026-03-31"
runner = CliRunner()

Row = dict[str, str]


def copy_example(tmp_path: Path, name: str = "district") -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / name))


def rewrite_attendance(export: Path, change: Callable[[Row], Row | None]) -> None:
    """attendance.csv with each row changed (or dropped when `change` returns None)."""
    path = export / "attendance.csv"
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in (change(dict(row)) for row in reader) if r is not None]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def sync(export: Path, out: Path, *extra: str, as_of: str = AS_OF) -> tuple[int, str]:
    res = runner.invoke(app, ["sync", str(export), "--as-of", as_of, "--out", str(out), *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, " ".join(res.output.split())  # rich wraps long lines


def check(export: Path, out: Path, tmp_path: Path, *extra: str, as_of: str = AS_OF) -> tuple[int, str]:
    args = ["check", str(export), "--as-of", as_of, "--report", str(tmp_path / "check-report.csv")]
    args += ["--store", f"sqlite:///{out / 'state.sqlite'}", *extra]
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, " ".join(res.output.split())


def store_rows(out: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(out / "state.sqlite") as conn:
        return conn.execute(sql).fetchall()


def delivered_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.ndjson"))}


def state(out: Path) -> tuple[dict[str, bytes], list[tuple], list[tuple]]:
    """What a recipient holds (the NDJSON folders), the outbox and the disclosure log."""
    outbox = store_rows(out, "SELECT key, status FROM outbox ORDER BY key")
    log = store_rows(out, "SELECT outbox_key, recipient FROM disclosures ORDER BY id")
    return delivered_files(out), outbox, log


def report_rows(path: Path) -> list[Row]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def verdicts(out: Path) -> list[tuple]:
    return store_rows(out, "SELECT run_id, verdict, accepted_reason, findings FROM run_verdicts ORDER BY run_id")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean, accepted run of the example district as of 2026-03-15: the state later runs are compared with."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    code, output = sync(EXAMPLE, out, as_of="2026-03-15")
    assert code == 0, output
    assert [v[1] for v in verdicts(out)] == ["clean"]
    return out


@pytest.fixture
def after_baseline(baseline: Path, tmp_path: Path) -> Path:
    """A copy of the baseline's output folder and store, for a test to run on."""
    return Path(shutil.copytree(baseline, tmp_path / "out"))


# --- unusable attendance --------------------------------------------------------------------------------------------


def _empty(export: Path) -> None:
    (export / "attendance.csv").write_bytes(b"")


def _header_only(export: Path) -> None:
    path = export / "attendance.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")


def _header_deleted(export: Path) -> None:
    path = export / "attendance.csv"
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")


@pytest.mark.parametrize(
    ("damage", "code"),
    [(_empty, "attendance-empty"), (_header_only, "attendance-empty"), (_header_deleted, "attendance-unusable")],
)
def test_unusable_attendance_stops_and_nothing_leaves(
    after_baseline: Path, tmp_path: Path, damage: Callable[[Path], None], code: str
) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    damage(export)
    before = state(out)
    exit_code, output = sync(export, out)
    assert exit_code == 1, output
    assert code in output and "nothing was sent" in output
    assert "--accept-change" not in output  # unusable attendance cannot be accepted
    assert state(out) == before  # nothing queued, nothing written, nothing logged
    _, status, _, findings = verdicts(out)[-1]
    assert status == "stopped" and [f["code"] for f in orjson.loads(findings)] == [code]
    issues = [r for r in report_rows(out / "rows-report.csv") if r["code"] == code]
    assert len(issues) == 1 and issues[0]["severity"] == "error" and issues[0]["file"] == "attendance.csv"
    # and an operator who says it is deliberate still gets nothing through
    exit_code, output = sync(export, out, "--accept-change", "the SIS is down")
    assert exit_code == 1 and code in output, output
    assert state(out) == before


def test_a_first_run_on_empty_attendance_writes_nothing(tmp_path: Path) -> None:
    export = copy_example(tmp_path)
    _empty(export)
    exit_code, output = sync(export, tmp_path / "out")
    assert exit_code == 1 and "attendance-empty" in output, output
    assert delivered_files(tmp_path / "out") == {}
    assert store_rows(tmp_path / "out", "SELECT count(*) FROM outbox") == [(0,)]


def test_the_installed_command_exits_1_without_a_traceback(tmp_path: Path) -> None:
    export = copy_example(tmp_path)
    _header_only(export)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sis2fhir"), "sync", str(export), "--as-of", AS_OF, "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "attendance-empty" in done.stderr
    assert delivered_files(tmp_path / "out") == {}


@pytest.fixture(scope="module")
def edfi_district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edfi") / "district"
    subprocess.run([sys.executable, str(GENERATOR), "--students", "40", "--attendance-format", "edfi", "--out",
                    str(out)], check=True, capture_output=True)  # fmt: skip
    return out


def test_the_edfi_district_syncs_cleanly(edfi_district: Path, tmp_path: Path) -> None:
    code, output = sync(edfi_district, tmp_path / "out")
    assert code == 0, output
    assert delivered_files(tmp_path / "out")


def test_edfi_xml_cut_short_stops_the_run(edfi_district: Path, tmp_path: Path) -> None:
    export = Path(shutil.copytree(edfi_district, tmp_path / "district"))
    xml = export / "StudentAttendance.xml"
    data = xml.read_bytes()
    xml.write_bytes(data[: len(data) // 2])  # a transfer cut short: the first half of the events parse
    code, output = sync(export, tmp_path / "out")
    assert code == 1, output
    assert "attendance-unreadable" in output and "StudentAttendance.xml" in output
    assert delivered_files(tmp_path / "out") == {}


def test_edfi_xml_that_is_not_xml_stops_the_run(edfi_district: Path, tmp_path: Path) -> None:
    export = Path(shutil.copytree(edfi_district, tmp_path / "district"))
    (export / "StudentAttendance.xml").write_bytes(b"\x00\x01 not xml at all")
    code, output = sync(export, tmp_path / "out")
    assert code == 1, output
    assert "Traceback" not in output
    assert delivered_files(tmp_path / "out") == {}


def _absences_only(row: Row) -> Row | None:
    return None if row["category"] in ("Present", "In Attendance") else row


def test_exception_only_attendance_without_calendar_is_refused_with_advice(tmp_path: Path) -> None:
    export = copy_example(tmp_path)
    rewrite_attendance(export, _absences_only)
    (export / "calendar.csv").unlink()
    code, output = sync(export, tmp_path / "out")
    assert code == 1, output
    assert "exception-only-without-calendar" in output and "Add calendar.csv" in output
    assert delivered_files(tmp_path / "out") == {}
    code, output = sync(export, tmp_path / "out", "--accept-change", "we know")
    assert code == 1 and "exception-only-without-calendar" in output, output


def test_the_same_absences_with_calendar_are_read_as_exception_only(tmp_path: Path) -> None:
    export = copy_example(tmp_path)
    rewrite_attendance(export, _absences_only)
    code, output = sync(export, tmp_path / "out")
    assert code == 0, output


# --- implausible attendance -------------------------------------------------------------------------------------------


def test_a_school_with_school_days_and_no_rows_stops_the_run(tmp_path: Path) -> None:
    export = copy_example(tmp_path)
    rewrite_attendance(export, lambda r: None if r["schoolSourcedId"] == "org-school-02" else r)
    code, output = sync(export, tmp_path / "out")  # a first run: no baseline, the absolute gate alone
    assert code == 1, output
    assert "school-without-attendance" in output and "org-school-02" in output and "--accept-change" in output
    assert delivered_files(tmp_path / "out") == {}
    assert store_rows(tmp_path / "out", "SELECT count(*) FROM outbox") == [(0,)]


def test_a_school_without_rows_is_normal_in_an_exception_only_file(tmp_path: Path) -> None:
    export = copy_example(tmp_path)
    rewrite_attendance(export, lambda r: None if r["schoolSourcedId"] == "org-school-02" else _absences_only(r))
    code, output = sync(export, tmp_path / "out")
    assert code == 0, output


def _every_other_day(row: Row) -> Row | None:
    """Three students in four lose their rows of every other day (every school day keeps some rows, so only the
    drop in rows per school day, about 37 %, is implausible)."""
    kept_student = sum(row["studentSourcedId"].encode()) % 4 == 0
    return row if kept_student or date.fromisoformat(row["date"]).toordinal() % 2 else None


def test_half_the_rows_per_school_day_stops_until_accepted(after_baseline: Path, tmp_path: Path) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    rewrite_attendance(export, _every_other_day)
    before = state(out)
    code, output = sync(export, out)
    assert code == 1, output
    assert "rows-per-school-day-dropped" in output and "--accept-change" in output
    assert state(out) == before
    assert verdicts(out)[-1][1] == "stopped"

    # the operator knows: the run goes through, and the store says who accepted what, and why
    code, output = sync(export, out, "--accept-change", "half-day schedule test")
    assert code in (0, 3), output
    assert "half-day schedule test" in output
    assert state(out)[0] != before[0]
    _, status, reason, findings = verdicts(out)[-1]
    assert status == "accepted" and reason == "half-day schedule test"
    overridden = [f["code"] for f in orjson.loads(findings) if f["overridden"]]
    assert "rows-per-school-day-dropped" in overridden
    report = [r for r in report_rows(out / "rows-report.csv") if r["code"] == "rows-per-school-day-dropped"]
    assert report[0]["severity"] == "warning" and "half-day schedule test" in report[0]["message"]

    # the accepted run is the new baseline: the same export again is plausible
    code, output = sync(export, out)
    assert code in (0, 3) and "rows-per-school-day-dropped" not in output, output
    assert verdicts(out)[-1][1] == "clean"


def test_a_stopped_run_is_not_a_baseline(after_baseline: Path, tmp_path: Path) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    rewrite_attendance(export, _every_other_day)
    assert sync(export, out)[0] == 1
    assert sync(export, out)[0] == 1  # still compared with the last accepted run, not with the stopped one
    code, output = sync(EXAMPLE, out)  # the complete export again
    assert code == 0, output
    assert [v[1] for v in verdicts(out)] == ["clean", "stopped", "stopped", "clean"]


def _students_with_early_absences(n: int, until: str = "2026-03-15") -> list[str]:
    found: list[str] = []
    with (EXAMPLE / "attendance.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            if "Absence" in r["category"] and r["date"] <= until and r["studentSourcedId"] not in found:
                found.append(r["studentSourcedId"])
    return found[:n]


def _absences_become_presence(students: list[str], first: str = "", last: str = "2026-03-15") -> Callable:
    def change(row: Row) -> Row:
        if row["studentSourcedId"] in students and "Absence" in row["category"] and first <= row["date"] <= last:
            row.update(category="Present", duration="1", reason="")
        return row

    return change


def test_a_correction_within_the_allowed_share_is_sent_and_listed(after_baseline: Path, tmp_path: Path) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    [student] = _students_with_early_absences(1)
    rewrite_attendance(export, _absences_become_presence([student]))
    code, output = sync(export, out)
    assert code == 0, output
    assert "days-absent-shrank" in output and "1 of 198" in output
    listed = [r for r in report_rows(out / "rows-report.csv") if r["code"] == "days-absent-shrank"]
    assert len(listed) == 2  # the finding, and the student x school it is about
    assert all(r["severity"] == "warning" for r in listed)
    assert sum(f"student {student} " in r["message"] for r in listed) == 1
    assert verdicts(out)[-1][1] == "clean"


def test_corrections_beyond_the_allowed_share_stop_the_run(after_baseline: Path, tmp_path: Path) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    students = _students_with_early_absences(10)
    rewrite_attendance(export, _absences_become_presence(students))
    before = state(out)
    code, output = sync(export, out)
    assert code == 1, output
    assert "days-absent-shrank" in output and "10 of 198" in output
    assert state(out) == before
    rows = report_rows(out / "rows-report.csv")
    listed = {r["message"].split()[1] for r in rows if r["column"] == "studentSourcedId"}
    assert listed == set(students)


def test_absences_changed_after_the_last_reported_day_are_no_correction(after_baseline: Path, tmp_path: Path) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    students = _students_with_early_absences(10)
    rewrite_attendance(export, _absences_become_presence(students, first="2026-03-16", last="2026-03-31"))
    code, output = sync(export, out)
    assert code == 0, output
    assert "days-absent-shrank" not in output


def test_the_allowed_share_comes_from_the_configuration(after_baseline: Path, tmp_path: Path) -> None:
    out = after_baseline
    export = copy_example(tmp_path)
    rewrite_attendance(export, _absences_become_presence(_students_with_early_absences(10)))
    config = tmp_path / "sis2fhir.yaml"
    config.write_text("plausibility:\n  max_shrink_share: 0.1\n")
    code, output = sync(export, out, "--config", str(config))
    assert code == 0 and "days-absent-shrank" in output, output


def test_an_as_of_date_before_the_last_accepted_run_stops(after_baseline: Path) -> None:
    code, output = sync(EXAMPLE, after_baseline, as_of="2026-03-01")
    assert code == 1 and "as-of-before-baseline" in output, output


# --- check: the same verdicts, nothing stored -----------------------------------------------------------------------


def test_check_gives_the_verdict_sync_would_and_stores_nothing(
    after_baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = after_baseline
    export = copy_example(tmp_path)
    rewrite_attendance(export, _absences_become_presence(_students_with_early_absences(10)))
    runs_before = store_rows(out, "SELECT count(*) FROM runs")
    before = state(out)

    code, output = check(export, out, tmp_path)
    assert code == 1, output
    assert "days-absent-shrank" in output and "10 of 198" in output
    assert [r["code"] for r in report_rows(tmp_path / "check-report.csv") if r["severity"] == "error"] == [
        "days-absent-shrank"
    ]

    code, output = check(export, out, tmp_path, "--accept-change", "SIS clean-up of early March")
    assert code == 0, output
    assert "would be accepted" in output and "SIS clean-up of early March" in output

    assert store_rows(out, "SELECT count(*) FROM runs") == runs_before and state(out) == before
    # and sync says what check said
    code, sync_output = sync(export, out)
    assert code == 1 and "days-absent-shrank" in sync_output and "10 of 198" in sync_output


def test_check_without_a_store_applies_the_absolute_gates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    export = copy_example(tmp_path)
    _header_only(export)
    res = runner.invoke(app, ["check", str(export), "--as-of", AS_OF, "--report", str(tmp_path / "r.csv")])
    assert res.exit_code == 1 and "attendance-empty" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["district", "r.csv"]  # no store was created


def test_accept_change_needs_a_reason(tmp_path: Path) -> None:
    res = runner.invoke(app, ["sync", str(EXAMPLE), "--out", str(tmp_path / "out"), "--accept-change", " "])
    assert res.exit_code == 2 and "needs a reason" in res.output
