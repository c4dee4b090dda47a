"""Both attendance engines on the same exports give the same answers: summaries (every field), the students
withheld, the row report (file, line, column, code, message, in order) and the counts the gates read.

The exports: the example district, the hand-checked district, a generated district with a defect of every kind
the columnar engine hands to the Python reader (padded and state ids, school identifiers, odd dates, durations,
categories and reasons, rows outside the year or after the as-of date, more outside rows than are listed by line,
not enrolled, outside the membership, not a school day, duplicates with the first row anywhere), every fuzz
variant of attendance.csv, enrollments.csv and calendar.csv (those the columnar engine leaves to the streaming one
included), and Ed-Fi XML (left to the streaming engine, which says why).
"""

from __future__ import annotations

import csv
import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from sis2fhir.columnar import ColumnarTally
from sis2fhir.engine import AttendanceEngine
from sis2fhir.policy import PRESETS
from sis2fhir.read.export import ExportError
from sis2fhir.tally import StreamingTally
from tests.end_to_end.test_sync import KNOWN, known_as_of
from tests.measure.test_engine_contract import everything, generate, measure
from tests.support import paths


def outcome(engine: AttendanceEngine, path: Path, as_of: date, preset: str = "essa") -> tuple[dict[str, Any], str]:
    """Everything the engine gives (or why the export is refused), and the engine that read the attendance."""
    try:
        measured, report = measure(engine, path, as_of, PRESETS[preset], date(2025, 11, 14))
    except ExportError as exc:
        return {"refused": str(exc)}, "refused"
    got = everything(measured, report)
    got["report"] = list(report.issues)  # in order, not only the same set
    return got, measured.engine


def same_answers(path: Path, as_of: date, preset: str = "essa") -> str:
    """Assert both engines agree on `path`; return the engine the columnar one used (columnar | streaming)."""
    want, _ = outcome(StreamingTally(workers=1), path, as_of, preset)
    got, engine = outcome(ColumnarTally(workers=2), path, as_of, preset)
    assert got == want
    return engine


def test_the_example_district() -> None:
    assert same_answers(paths.EXAMPLE, date(2026, 3, 31)) == "columnar"
    assert same_answers(paths.EXAMPLE, date(2026, 3, 31), "crdc") == "columnar"


def test_the_hand_checked_district() -> None:
    assert same_answers(KNOWN, known_as_of()) == "columnar"
    assert same_answers(KNOWN, known_as_of(), "crdc") == "columnar"


def _defective(folder: Path, seed: int) -> Path:
    """A generated district whose attendance.csv has every kind of row the columnar engine leaves to Python."""
    rng = random.Random(seed)
    path = folder / "attendance.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    with (folder / "orgs.csv").open(newline="") as f:
        orgs = {r["sourcedId"]: r["identifier"] for r in csv.DictReader(f) if r["type"] == "school"}

    def put(row: list[str], column: str, value: str) -> list[str]:
        row = list(row)
        row[col[column]] = value
        return row

    edits = [
        lambda r: put(r, "studentSourcedId", f" {r[col['studentSourcedId']]} "),  # padded: stripped
        lambda r: put(r, "studentSourcedId", ""),  # named by state id only
        lambda r: put(r, "studentSourcedId", "stu-nobody"),  # resolved by its state id
        lambda r: put(put(r, "studentSourcedId", "stu-nobody"), "studentIdentifier", ""),  # unknown student
        lambda r: put(r, "studentIdentifier", "999999999"),  # a state id of nobody: the sourcedId decides
        lambda r: put(r, "schoolSourcedId", orgs[r[col["schoolSourcedId"]]]),  # the school's identifier
        lambda r: put(r, "schoolSourcedId", "org-nowhere"),  # unknown school
        lambda r: put(r, "date", r[col["date"]] + "T08:00:00"),  # a time part: dropped
        lambda r: put(r, "date", "03/04/2026"),  # not ISO
        lambda r: put(r, "date", "2024-10-01"),  # outside the school year
        lambda r: put(r, "date", "2026-06-01"),  # after the as-of date, or not a school day
        lambda r: put(r, "date", "2025-08-23"),  # a Saturday before the year: outside, or not in membership
        lambda r: put(r, "category", r[col["category"]].upper()),  # any case
        lambda r: put(r, "category", "Sick"),  # unknown category
        lambda r: put(r, "duration", rng.choice([".5", "0.50", "1.0", "", " 1", "0.33"])),
        lambda r: put(r, "duration", rng.choice(["abc", "0", "1.5", "nan"])),  # bad duration
        lambda r: put(r, "reason", rng.choice(["Illness", "sick", "out-of-school suspension", "ISS", "Dentist"])),
        lambda r: put(r, "reason", "Gone fishing"),  # unknown reason: read as unknown, reported once
        lambda r: put(r, "category", "Unexcused Absence"),
    ]
    changed = list(body)
    for i, at in enumerate(rng.sample(range(len(body)), 6 * len(edits))):  # each kind of defect on 6 rows
        changed[at] = edits[i % len(edits)](changed[at])
    duplicates = [put(r, "category", "Excused Absence") for r in rng.sample(body, 60)]
    duplicates += [put(r, "duration", "0.5") for r in rng.sample(body, 20)]
    outside = [put(r, "date", f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}") for r in rng.sample(body, 1200)]
    moved = rng.sample(range(len(changed)), 40)
    for i in moved:  # a duplicate early in the file: the later original is the conflict
        changed.insert(rng.randrange(i + 1), changed[i])
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(changed[: len(changed) // 2] + outside + changed[len(changed) // 2 :] + duplicates)
    return folder


@pytest.mark.parametrize("style", ["positive", "exception-only"])
@pytest.mark.parametrize("as_of", [date(2026, 3, 31), date(2025, 10, 15)])
def test_a_generated_district_with_every_kind_of_defect(tmp_path: Path, style: str, as_of: date) -> None:
    folder = _defective(generate(tmp_path / "d", 7, 120, "--style", style), 11)
    assert same_answers(folder, as_of) == "columnar"
    assert same_answers(folder, as_of, "crdc") == "columnar"
    measured, report = measure(ColumnarTally(), folder, as_of, PRESETS["essa"])
    codes = report.by_code()
    for code in ("unknown-student", "unknown-school", "bad-date", "unknown-category", "bad-duration"):
        assert codes[code] > 0, code
    assert codes["conflicting-event"] > 0 and codes["outside-school-year"] == 1001  # 1000 by line, one sum
    assert measured.withheld


def test_the_per_student_group_bys_in_many_passes_give_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state's district is grouped a slice of students x schools at a time (DuckDB cannot spill the per-group
    bitstrings): slices of 7 must give what one pass gives, defects and duplicates across slices included."""
    from sis2fhir.columnar import engine as columnar_engine

    folder = _defective(generate(tmp_path / "d", 7, 120, "--style", "positive"), 11)
    monkeypatch.setattr(columnar_engine, "KEYS_PER_PASS", 7)
    assert same_answers(folder, date(2026, 3, 31)) == "columnar"
    assert same_answers(paths.EXAMPLE, date(2026, 3, 31)) == "columnar"


@pytest.mark.parametrize("calendar", [True, False])
def test_the_facts_of_the_year_read_a_few_students_at_a_time_give_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calendar: bool
) -> None:
    """The monthly tallies, streaks and window are read while a slice of students' day masks is in hand (not the
    district's masks at once): slices of 5 must give what the streaming engine gives, also when the school days
    come from the rows (no calendar.csv), the Python reader's rows among them."""
    from sis2fhir.columnar import engine as columnar_engine

    folder = _defective(generate(tmp_path / "d", 7, 120, "--style", "positive"), 11)
    if not calendar:
        (folder / "calendar.csv").unlink()
    monkeypatch.setattr(columnar_engine, "FACTS_PER_PASS", 5)
    assert same_answers(folder, date(2026, 3, 31)) == "columnar"
    assert same_answers(folder, date(2025, 10, 15), "crdc") == "columnar"


def test_a_quote_in_the_file_leaves_it_to_the_streaming_engine(tmp_path: Path) -> None:
    folder = generate(tmp_path / "d", 3, 20)
    path = folder / "attendance.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = '"' + lines[5].replace(",", '",', 1)  # a quoted studentSourcedId: the same value
    path.write_text("".join(lines))
    assert same_answers(folder, date(2026, 3, 31)) == "streaming"
    measured, _ = measure(ColumnarTally(), folder, date(2026, 3, 31), PRESETS["essa"])
    assert measured.fallback == "it holds a quote"


def test_duckdb_out_of_its_memory_limit_leaves_the_file_to_the_streaming_engine() -> None:
    """On the example district, 10 MB is enough to read the file but not to resolve its rows (seen with DuckDB 2.0.1
    on two threads); a too-small limit must cost speed, not the run."""
    want, _ = outcome(StreamingTally(workers=1), paths.EXAMPLE, date(2026, 3, 31))
    small = ColumnarTally(workers=2, memory_limit="10MB")
    got, engine = outcome(small, paths.EXAMPLE, date(2026, 3, 31))
    assert (got, engine) == (want, "streaming")
    measured, _ = measure(small, paths.EXAMPLE, date(2026, 3, 31), PRESETS["essa"])
    assert measured.fallback == "DuckDB needs more than its memory limit of 10MB to resolve its rows"


def test_an_unterminated_quote_is_the_shapes_reason_not_duckdbs_error(tmp_path: Path) -> None:
    """DuckDB reads the file while its bytes are checked: when both fail, the run's log says what is odd in it."""
    folder = generate(tmp_path / "d", 3, 20)
    path = folder / "attendance.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[-3] = '"' + lines[-3]  # a quote that never closes: DuckDB's strict reader fails on it
    path.write_text("".join(lines))
    assert same_answers(folder, date(2026, 3, 31)) == "streaming"
    measured, _ = measure(ColumnarTally(), folder, date(2026, 3, 31), PRESETS["essa"])
    assert measured.fallback == "it holds a quote"


def test_a_ragged_row_in_a_plain_file_is_duckdbs_to_report(tmp_path: Path) -> None:
    """Bytes that are plain but a row DuckDB's strict reader refuses (a field too many): the streaming engine reads
    it and reports the row; the run's log says DuckDB could not read it."""
    folder = generate(tmp_path / "d", 3, 20)
    path = folder / "attendance.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[9] = lines[9].rstrip("\n") + ",extra\n"
    path.write_text("".join(lines))
    assert same_answers(folder, date(2026, 3, 31)) == "streaming"
    measured, report = measure(ColumnarTally(), folder, date(2026, 3, 31), PRESETS["essa"])
    assert measured.fallback.startswith("DuckDB cannot read it as plain CSV (")
    assert [i.line for i in report.issues if i.code == "ragged-row"] == [10]


COLUMNS = ("studentSourcedId", "studentIdentifier", "schoolSourcedId", "date", "category", "duration", "reason")


@pytest.mark.parametrize("column", range(len(COLUMNS)))
def test_a_value_over_the_csv_field_limit_leaves_it_to_the_streaming_engine(tmp_path: Path, column: int) -> None:
    folder = generate(tmp_path / "d", 4, 20)
    path = folder / "attendance.csv"
    lines = path.read_text().splitlines(keepends=True)
    assert lines[0].rstrip().split(",")[column] == COLUMNS[column]
    fields = lines[7].rstrip("\n").split(",")
    fields[column] = "x" * csv.field_size_limit()  # the Python reader's CSV layer reports it at its own line
    lines[7] = ",".join(fields) + "\n"
    path.write_text("".join(lines))
    assert same_answers(folder, date(2026, 3, 31)) == "streaming"
    measured, _ = measure(ColumnarTally(), folder, date(2026, 3, 31), PRESETS["essa"])
    assert measured.fallback.endswith("(a value is longer than the csv module's field limit)")


def test_ed_fi_xml_is_left_to_the_streaming_engine(tmp_path: Path) -> None:
    folder = generate(tmp_path / "edfi", 5, 30, "--style", "exception-only", "--attendance-format", "edfi")
    assert same_answers(folder, date(2026, 3, 31)) == "streaming"
    measured, _ = measure(ColumnarTally(), folder, date(2026, 3, 31), PRESETS["essa"])
    assert measured.fallback == "the attendance is Ed-Fi XML"


def _fuzz_variants() -> list[Any]:
    from tests.fuzz.catalogue import all_variants

    wanted = ("attendance", "enrollments", "calendar")
    return [
        v
        for v in all_variants()
        if v.kind in {"file-damage", "row-defect", "edfi"} and (v.kind == "edfi" or any(w in v.id for w in wanted))
    ]


@pytest.mark.parametrize("variant", _fuzz_variants(), ids=lambda v: v.id)
def test_every_fuzz_variant_of_the_attendance(variant: Any, tmp_path: Path) -> None:
    from tests.fuzz.bases import generated

    call = variant.build(tmp_path, generated())
    assert isinstance(call.export, Path)
    same_answers(call.export, date.fromisoformat(call.as_of or "2026-03-31"))


def test_a_file_duckdb_reads_in_parallel_pieces_keeps_every_line(tmp_path: Path) -> None:
    """About 30 MB: DuckDB splits the file between its threads; rows (and so lines) must keep the file's order."""
    folder = _defective(generate(tmp_path / "d", 9, 3000), 13)
    assert (folder / "attendance.csv").stat().st_size > 24 << 20
    assert same_answers(folder, date(2026, 3, 31)) == "columnar"
