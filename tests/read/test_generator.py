"""Tests of the example district generator: reproducible, OneRoster 1.1 shaped, realistic, current."""

from __future__ import annotations

import csv
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

from tests.support import paths

REPO = paths.ROOT
GENERATOR = REPO / "examples" / "generate_district.py"
EXAMPLE = REPO / "examples" / "district"

# OneRoster 1.1 CSV binding, header rows as the spec's tables give them.
ONEROSTER_11_HEADERS = {
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "users.csv": "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password",
    "courses.csv": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,"
    "orgSourcedId,subjects,subjectCodes",
    "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
    "location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    "enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
    "primary,beginDate,endDate",
    "academicSessions.csv": "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear",
    "demographics.csv": "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
    "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,"
    "hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,"
    "publicSchoolResidenceStatus",
}
ATTENDANCE_HEADER = "studentSourcedId,studentIdentifier,schoolSourcedId,date,category,duration,reason"
ABSENCES = {"Excused Absence", "Unexcused Absence"}


def generate(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def npi_is_valid(npi: str) -> bool:
    """CMS NPI check: Luhn over '80840' + the 10 digits."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed("80840" + npi)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "district"
    done = generate(out, "--seed", "11", "--students", "400", "--schools", "3")
    assert done.returncode == 0, done.stderr
    return out


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert (
            generate(tmp_path / name, "--seed", seed, "--students", "40", "--style", "exception-only").returncode == 0
        )
    a, b, c = (files(tmp_path / n) for n in "abc")
    assert a == b
    assert a["attendance.csv"] != c["attendance.csv"]
    assert a["users.csv"] != c["users.csv"]


def test_files_carry_the_oneroster_11_headers_and_a_bulk_manifest(district: Path) -> None:
    for name, header in ONEROSTER_11_HEADERS.items():
        first_line = (district / name).read_text(encoding="utf-8").splitlines()[0]
        assert first_line == header, name
    manifest = {r["propertyName"]: r["value"] for r in rows(district, "manifest.csv")}
    assert manifest["oneroster.version"] == "1.1"
    for name in ONEROSTER_11_HEADERS:
        assert manifest[f"file.{name.removesuffix('.csv')}"] == "bulk"
    assert (district / "attendance.csv").read_text(encoding="utf-8").splitlines()[0] == ATTENDANCE_HEADER
    # bulk files leave status and dateLastModified blank
    assert all(r["status"] == "" and r["dateLastModified"] == "" for r in rows(district, "users.csv"))


def test_the_district_has_the_requested_students_schools_and_a_180_day_year(district: Path) -> None:
    orgs = rows(district, "orgs.csv")
    assert Counter(o["type"] for o in orgs) == {"district": 1, "school": 3}
    users = rows(district, "users.csv")
    roles = Counter(u["role"] for u in users)
    assert roles["student"] == 400
    assert 0 < roles["teacher"] < 100
    sessions = rows(district, "academicSessions.csv")
    assert Counter(s["type"] for s in sessions) == {"schoolYear": 1, "term": 2}
    year = next(s for s in sessions if s["type"] == "schoolYear")
    assert (year["startDate"], year["endDate"], year["schoolYear"]) == ("2025-08-25", "2026-06-12", "2026")
    days = defaultdict(list)
    for r in rows(district, "calendar.csv"):
        if r["instructional"] == "true":
            days[r["schoolSourcedId"]].append(date.fromisoformat(r["date"]))
    assert set(days) == {o["sourcedId"] for o in orgs if o["type"] == "school"}
    for school_days in days.values():
        assert 175 <= len(school_days) <= 185
        assert all(d.weekday() < 5 for d in school_days)
        assert date(2025, 12, 25) not in school_days and date(2025, 9, 1) not in school_days  # holidays


def test_state_id_is_in_identifier_and_in_user_ids(district: Path) -> None:
    students = [u for u in rows(district, "users.csv") if u["role"] == "student"]
    ids = [s["identifier"] for s in students]
    assert len(set(ids)) == len(ids) and all(i.isdigit() for i in ids)
    for s in students:
        assert f"{{state:{s['identifier']}}}" in s["userIds"].split(",")


def test_positive_attendance_covers_exactly_each_membership(district: Path) -> None:
    calendar = defaultdict(set)
    for r in rows(district, "calendar.csv"):
        if r["instructional"] == "true":
            calendar[r["schoolSourcedId"]].add(r["date"])
    year = next(s for s in rows(district, "academicSessions.csv") if s["type"] == "schoolYear")
    expected = Counter()
    for e in rows(district, "enrollments.csv"):
        if e["role"] != "student":
            continue
        begin, end = e["beginDate"] or year["startDate"], e["endDate"] or year["endDate"]
        expected[(e["userSourcedId"], e["schoolSourcedId"])] += sum(
            1 for d in calendar[e["schoolSourcedId"]] if begin <= d <= end
        )
    seen = Counter()
    per_day = Counter()
    for r in rows(district, "attendance.csv"):
        assert r["date"] in calendar[r["schoolSourcedId"]]
        seen[(r["studentSourcedId"], r["schoolSourcedId"])] += 1
        per_day[(r["studentSourcedId"], r["date"])] += 1
    assert seen == +expected
    assert max(per_day.values()) == 1  # one row per student per day: no conflicts


def test_attendance_is_realistic(district: Path) -> None:
    att = rows(district, "attendance.csv")
    absent = defaultdict(float)
    membership = Counter()
    for r in att:
        key = (r["studentSourcedId"], r["schoolSourcedId"])
        membership[key] += 1
        if r["category"] in ABSENCES:
            absent[key] += float(r["duration"] or 1)
    measured = [k for k, n in membership.items() if n >= 10]
    chronic = sum(1 for k in measured if absent[k] >= 0.1 * membership[k])
    assert 0.15 <= chronic / len(measured) <= 0.30
    reasons = Counter(r["reason"] for r in att if r["category"] in ABSENCES)
    assert reasons.most_common(1)[0][0] == "illness"
    assert {"medical", "mental-health", "transportation", "family", "suspension-out-of-school"} <= set(reasons)
    categories = Counter(r["category"] for r in att)
    assert categories["Excused Absence"] > categories["Unexcused Absence"] > 0
    assert categories["Tardy"] > 0
    assert any(r["duration"] == "0.5" and r["category"] in ABSENCES for r in att)
    iss = [r for r in att if r["reason"] == "suspension-in-school"]
    assert iss and all(r["category"] in {"Present", "In Attendance"} for r in iss)
    enrollments = [e for e in rows(district, "enrollments.csv") if e["role"] == "student"]
    movers = [s for s, n in Counter(e["userSourcedId"] for e in enrollments).items() if n > 1]
    assert 1 <= len(movers) <= 8
    assert any(e["beginDate"] > "2025-08-25" for e in enrollments if e["userSourcedId"] not in movers)
    assert any("" < e["endDate"] < "2026-06-12" for e in enrollments if e["userSourcedId"] not in movers)


def test_consents_mix_at_the_as_of_date(district: Path) -> None:
    consents = rows(district, "consents.csv")
    as_of = "2026-03-31"
    recipients = {c["recipientOrganization"] for c in consents}
    assert 2 <= len(recipients) <= 3
    assert all(npi_is_valid(r) for r in recipients)
    status = Counter(c["status"] for c in consents)
    assert status["active"] > len(consents) / 2
    revoked = [c["revokedDate"] for c in consents if c["status"] == "revoked"]
    assert any(d <= as_of for d in revoked) and any(d > as_of for d in revoked)
    assert status["declined"] > 0
    assert any(c["periodEnd"] and c["periodEnd"] < as_of for c in consents)  # expired
    assert any(c["periodStart"] > as_of for c in consents)  # not yet started
    assert any(c["dataScope"] not in {"", "attendance", "education-records"} for c in consents)
    students = {u["sourcedId"]: u["identifier"] for u in rows(district, "users.csv") if u["role"] == "student"}
    by_state = {v: k for k, v in students.items()}
    consented = {c["studentSourcedId"] or by_state[c["studentIdentifier"]] for c in consents}
    assert 0 < len(students) - len(consented) < len(students) / 3  # some students have no consent at all


def test_exception_only_positive_and_edfi_describe_the_same_absences(tmp_path: Path) -> None:
    common = ("--seed", "9", "--students", "80")
    assert generate(tmp_path / "pos", *common).returncode == 0
    assert generate(tmp_path / "exc", *common, "--style", "exception-only").returncode == 0
    assert (
        generate(tmp_path / "edfi", *common, "--style", "exception-only", "--attendance-format", "edfi").returncode == 0
    )
    key = ("studentSourcedId", "schoolSourcedId", "date", "category", "duration", "reason")
    positive = [
        tuple(r[k] for k in key) for r in rows(tmp_path / "pos", "attendance.csv") if r["category"] != "Present"
    ]
    exceptions = [tuple(r[k] for k in key) for r in rows(tmp_path / "exc", "attendance.csv")]
    assert positive == exceptions
    assert any(e[3] in ABSENCES for e in exceptions)
    assert not (tmp_path / "edfi" / "attendance.csv").exists()
    ns = {"e": "http://ed-fi.org/5.2.0"}
    root = ET.parse(tmp_path / "edfi" / "StudentAttendance.xml").getroot()
    assert root.tag == "{http://ed-fi.org/5.2.0}InterchangeStudentAttendance"
    student_of = {u["identifier"]: u["sourcedId"] for u in rows(tmp_path / "edfi", "users.csv")}
    school_of = {o["identifier"]: o["sourcedId"] for o in rows(tmp_path / "edfi", "orgs.csv")}
    prefix = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#"
    edfi = []
    for ev in root.findall("e:StudentSchoolAttendanceEvent", ns):
        category = ev.findtext("e:AttendanceEvent/e:AttendanceEventCategory", namespaces=ns)
        assert category.startswith(prefix)
        edfi.append((
            student_of[ev.findtext("e:StudentReference/e:StudentIdentity/e:StudentUniqueId", namespaces=ns)],
            school_of[ev.findtext("e:SchoolReference/e:SchoolIdentity/e:SchoolId", namespaces=ns)],
            ev.findtext("e:AttendanceEvent/e:EventDate", namespaces=ns),
            category.removeprefix(prefix),
            ev.findtext("e:AttendanceEvent/e:EventDuration", default="", namespaces=ns),
            ev.findtext("e:AttendanceEvent/e:AttendanceEventReason", default="", namespaces=ns),
        ))  # fmt: skip
        assert ev.find("e:SessionReference/e:SessionIdentity/e:SessionName", ns) is not None
    assert edfi == exceptions
    # the rest of the export is the same whatever the attendance style or format
    for name in ("users.csv", "enrollments.csv", "consents.csv", "calendar.csv"):
        assert (tmp_path / "pos" / name).read_bytes() == (tmp_path / "edfi" / name).read_bytes()


def test_zip_holds_the_same_files_as_the_folder(tmp_path: Path) -> None:
    assert generate(tmp_path / "folder", "--students", "30").returncode == 0
    assert generate(tmp_path / "upload", "--students", "30", "--zip").returncode == 0
    with zipfile.ZipFile(tmp_path / "upload.zip") as zf:
        zipped = {n: zf.read(n) for n in zf.namelist()}
    assert zipped == files(tmp_path / "folder")
    assert not (tmp_path / "upload").exists()


def test_bad_arguments_get_a_message_not_a_traceback(tmp_path: Path) -> None:
    done = generate(tmp_path / "x", "--students", "0")
    assert done.returncode == 2
    assert "--students" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    done = generate(tmp_path / "notes")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_committed_example_is_what_the_documented_command_writes(tmp_path: Path) -> None:
    readme = (REPO / "examples" / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith("python3 examples/generate_district.py --seed")]
    assert len(commands) == 1, "examples/README.md should document exactly one command for examples/district"
    args = shlex.split(commands[0])[2:]
    out_at = args.index("--out")
    assert args[out_at + 1] == "examples/district"
    args[out_at + 1] = str(tmp_path / "fresh")
    done = subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert files(tmp_path / "fresh") == files(EXAMPLE)
