"""Variants of kind file-damage and row-defect: every CSV file of the example, damaged byte- and row-wise.

Expectations follow issue 6: a bad row costs only its row (named with file, line, column; exit 3; only that row's
student may change); a file the run cannot do without that is empty, header-only (attendance), headless or missing a
required column makes the export unusable (exit 1, nothing sent); BOMs, CRLF, shuffled or extra columns change
nothing (exit 0, identical output).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz import damage as dm
from tests.fuzz.district import District
from tests.fuzz.model import Bases, Call, Expect, RowRef, Variant

Edit = Callable[[bytes], bytes]


def folder_with(edits: dict[str, Edit | None], base: str = "csv", prior: bool = False) -> Callable[[Path, Bases], Call]:
    """A copy of a clean export with some files edited (None: the file deleted)."""

    def build(work: Path, bases: Bases) -> Call:
        export = work / "export"
        shutil.copytree(bases.of(base), export)
        for name, edit in edits.items():
            path = export / name
            if edit is None:
                path.unlink()
            else:
                path.write_bytes(edit(path.read_bytes()))
        return Call(export, out=work / "out", prior=prior)

    return build


@dataclass(frozen=True, slots=True)
class Spec:
    """How a file matters. level: required | consents | demographics | manifest | ignored."""

    level: str
    strict: tuple[str, ...]  # a damaged value here makes the row unusable
    text: tuple[str, ...]  # free text: reported, the row may still be used
    trunc: str  # the column the last row is cut in
    drop: tuple[tuple[str, ...], ...]  # required columns (groups dropped together)
    rows: Callable[[District], list[int]]


def _lines(name: str) -> Callable[[District], list[int]]:
    return lambda d: list(d.file(name).data_lines)[:-1]


def _calendar_rows(d: District) -> list[int]:
    cal = d.file("calendar.csv")
    return [n for n in cal.data_lines if d.affected("calendar.csv", n)]


def _users_rows(d: District) -> list[int]:
    users = d.file("users.csv")
    return [n for n in list(users.data_lines)[:-1] if users.row(n)["role"] == "student"]


def _enrollment_rows(d: District) -> list[int]:
    enr = d.file("enrollments.csv")
    return [n for n in list(enr.data_lines)[:-1] if enr.row(n)["role"] == "student"]


SPECS: dict[str, Spec] = {
    "attendance.csv": Spec(
        "required",
        ("date", "category", "schoolSourcedId", "duration"),
        ("reason",),
        "date",
        (("date",), ("category",), ("schoolSourcedId",), ("studentSourcedId", "studentIdentifier")),
        lambda d: d.attendance_lines(),
    ),
    "calendar.csv": Spec(
        "required",
        ("date", "instructional"),
        (),
        "date",
        (("date",), ("instructional",), ("schoolSourcedId",)),
        _calendar_rows,
    ),
    "consents.csv": Spec(
        "consents",
        ("signedDate", "status", "consentId", "periodStart"),
        ("grantorName", "recipientName"),
        "signedDate",
        (("consentId",), ("status",), ("signedDate",), ("recipientOrganization",), ("grantorName",)),
        _lines("consents.csv"),
    ),
    "users.csv": Spec(
        "required", ("sourcedId", "role"), ("givenName", "familyName"), "role", (("role",), ("sourcedId",)), _users_rows
    ),
    "enrollments.csv": Spec(
        "required",
        ("userSourcedId", "schoolSourcedId", "role"),
        ("classSourcedId",),
        "userSourcedId",
        (("userSourcedId",), ("schoolSourcedId",), ("role",)),
        _enrollment_rows,
    ),
    "orgs.csv": Spec("required", ("sourcedId", "type"), ("name",), "type", (("type",), ("sourcedId",)), lambda d: [3]),
    "academicSessions.csv": Spec(
        "required", ("startDate", "endDate"), ("title",), "startDate", (("startDate",), ("type",)), lambda d: [3]
    ),
    "demographics.csv": Spec(
        "demographics",
        ("birthDate", "sex"),
        ("countryOfBirthCode",),
        "birthDate",
        (("sourcedId",),),
        _lines("demographics.csv"),
    ),
    "manifest.csv": Spec("manifest", ("value",), (), "value", (("value",),), lambda d: list(range(4, 17))),
    "classes.csv": Spec("ignored", ("sourcedId",), ("title",), "title", (("sourcedId",),), _lines("classes.csv")),
    "courses.csv": Spec("ignored", ("sourcedId",), ("title",), "title", (("sourcedId",),), _lines("courses.csv")),
}

IGNORED = "sis2fhir does not read classes.csv or courses.csv: damage there may not change any student's resources."
MANIFEST = (
    "manifest.csv only says the version and bulk/delta per file (all bulk here): reading it with a warning changes "
    "nothing; refusing a damaged manifest (exit 1, nothing sent) is also safe."
)
DEMOGRAPHICS = (
    "demographics.csv only feeds Patient matching (birth date, sex); its bad values are warnings by the project's "
    "design, so exit 0 or 3, but the row must be named and no Observation or Consent may change."
)


def file_level(name: str, damage: str) -> Expect:
    """Expectation when the file as a whole is damaged (deleted header, header-only, empty, missing column)."""
    spec = SPECS[name]
    if spec.level == "ignored":
        return Expect("clean", frozenset({0, 3}), why=IGNORED)
    if spec.level == "manifest":
        return Expect("clean", frozenset({0}), alt_unusable=True, why=MANIFEST)
    if spec.level == "demographics":
        if damage == "header-only":
            return Expect(
                "clean",
                frozenset({0}),
                demographics_may_go=True,
                why="a header-only optional file is a district without the data (the Patients then carry no birth "
                "date or gender; nothing else changes)",
            )
        line = None if damage == "empty" else 1
        return Expect(
            "row",
            frozenset({0, 3} if damage == "empty" else {3}),
            (RowRef(name, line),),
            alt_unusable=True,
            demographics_may_go=True,
            why=DEMOGRAPHICS + " An unreadable demographics file must be reported (its header line); the Patients "
            "of a self-contained folder then lose birth date and gender, and nothing else changes.",
        )
    if spec.level == "consents" and damage == "header-only":
        return Expect(
            "nothing-to-send",
            frozenset({0}),
            why="a header-only consents.csv is a district with no consent on file yet: nobody may receive anything, "
            "and that is not an error",
        )
    why = {
        "consents": "consents.csv is there but unreadable: revocations in it cannot be honoured, so nothing may be "
        "sent (an absent or header-only consents.csv is different: no consent yet)",
        "required": f"{name} is one of the files the numbers are computed from: without it every student's "
        "numbers would be wrong, so the export is unusable",
    }[spec.level]
    return Expect("unusable", frozenset({1}), why=why)


def row_level(d: District, name: str, line: int, column: str, strict: bool, why: str) -> Expect:
    """Expectation when one row is damaged in one column."""
    spec = SPECS[name]
    if spec.level == "ignored":
        return Expect("clean", frozenset({0, 3}), why=IGNORED)
    ref = (RowRef(name, line, (column,)),)
    if spec.level == "manifest":
        return Expect("row", frozenset({0, 3}), ref, alt_unusable=True, why=MANIFEST + " " + why)
    if spec.level == "demographics":
        return Expect("row", frozenset({0, 3}), ref, d.affected(name, line), why=DEMOGRAPHICS + " " + why)
    exits = frozenset({3}) if strict else frozenset({0, 3})
    tail = (
        " The value cannot be used, so the row is rejected (exit 3)."
        if strict
        else " Free text: the row may be used with a warning (exit 0) or rejected (exit 3)."
    )
    return Expect("row", exits, ref, d.affected(name, line), why=why + tail)


def _line_only(e: Expect) -> Expect:
    """The same expectation without a column: a row cut short may be reported at any of the fields it lost."""
    rows = tuple(RowRef(r.file, r.line) for r in e.rows)
    return Expect(e.outcome, e.exits, rows, e.affected, e.alt_unusable, e.why)


BAD_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xfe", b"\x80", b"\xf8\x88\x80\x80\x80")


def _splicer(rng: random.Random) -> Callable[[str], str]:
    """Put MARK at a position chosen now (builds run later, in any order: the bytes must not depend on it)."""
    at = rng.random()

    def splice(value: str) -> str:
        k = round(at * len(value))
        return value[:k] + dm.MARK + value[k:]

    return splice


def file_damage(d: District, rng: random.Random) -> list[Variant]:
    out: list[Variant] = []
    for name in SPECS:
        out += _file_variants(d, name, rng)
    return out


def _file_variants(d: District, name: str, rng: random.Random) -> list[Variant]:
    out: list[Variant] = []
    spec = SPECS[name]
    f = d.file(name)
    stem = name.removesuffix(".csv")

    def add(tag: str, what: str, edit: Edit, expect: Expect, stem: str = stem) -> None:
        out.append(Variant(f"file-{stem}-{tag}", "file-damage", what, folder_with({name: edit}), expect))

    def on_row(line: int, column: str, raw: bytes, placed: Callable[[str], str]) -> Edit:
        col = f.col(column)

        def edit(data: bytes) -> bytes:
            return dm.with_lines(
                data, lambda ls: dm.replace_line(ls, line, dm.set_field(ls[line - 1], col, placed, raw))
            )

        return edit

    candidates = spec.rows(d)

    def pick(column: str, quote: bool = False) -> int:
        pool = [n for n in candidates if f.row(n)[column] and (not quote or f.unquoted(n, column))]
        return rng.choice(pool or candidates)

    # truncation mid-row: the file ends inside the last row's `trunc` field, without a newline
    last = len(f.lines)
    value = f.row(last)[spec.trunc]
    for keep in sorted({1, max(1, len(value) - 3)}):
        edit = lambda data, keep=keep: dm.with_lines(data, lambda ls: dm.truncate_in_field(ls, f.col(spec.trunc), keep))  # noqa: E731
        add(
            f"truncated-mid-row-{keep}",
            f"the file ends {keep} characters into the last row's {spec.trunc} (a transfer cut short)",
            edit,
            _line_only(row_level(d, name, last, spec.trunc, True, "The last row is cut short: it must be named.")),
        )
    add("deleted-header", "the header line is gone", lambda b: b.split(b"\n", 1)[1], file_level(name, "deleted"))
    add("header-only", "only the header line", lambda b: b.split(b"\n", 1)[0] + b"\n", file_level(name, "header-only"))
    add("empty", "a 0-byte file", lambda b: b"", file_level(name, "empty"))
    for i, column in enumerate((*spec.strict[:2], *(spec.text or spec.strict[2:3] or spec.strict[:1]))):
        strict = column in spec.strict
        line, raw = pick(column), rng.choice(BAD_UTF8)
        add(
            f"invalid-utf8-{i}",
            f"an invalid UTF-8 sequence {raw!r} in {column} at line {line}",
            on_row(line, column, raw, _splicer(rng)),
            row_level(d, name, line, column, strict, f"Invalid UTF-8 in {column} at line {line}."),
        )
    for i, column in enumerate((spec.strict[0], (spec.text or spec.strict)[-1])):
        line = pick(column)
        add(
            f"latin1-{i}",
            f"a Latin-1 'é' (0xE9) in {column} at line {line}",
            on_row(line, column, b"\xe9", _splicer(rng)),
            row_level(d, name, line, column, column in spec.strict, f"A Latin-1 byte in {column} at line {line}."),
        )
    for i, column in enumerate(spec.strict[:2]):
        line = pick(column)
        add(
            f"nul-{i}",
            f"a NUL byte in {column} at line {line}",
            on_row(line, column, b"\x00", _splicer(rng)),
            row_level(d, name, line, column, True, f"A NUL byte in {column} at line {line}."),
        )
    for i, column in enumerate((spec.strict[0], (spec.text or spec.strict)[-1])):
        line = pick(column, quote=True)
        add(
            f"unclosed-quote-{i}",
            f"a stray opening quote before {column} at line {line}, never closed",
            on_row(line, column, b'"', lambda v: dm.MARK + v),
            row_level(
                d,
                name,
                line,
                column,
                column in spec.strict,
                f"A stray quote at line {line} may not swallow the rows after it: only that row is lost.",
            ),
        )
    for i, (column, size) in enumerate(((spec.strict[0], 200_000), ((spec.text or spec.strict)[-1], 1_500_000))):
        line = pick(column)
        add(
            f"oversized-field-{i}",
            f"{column} at line {line} padded to {size:,} characters",
            on_row(line, column, b"", lambda v, size=size: v + "x" * size),
            row_level(d, name, line, column, column in spec.strict, f"An oversized {column} at line {line}."),
        )
    clean = Expect(
        "clean",
        frozenset({0, 3}) if spec.level == "ignored" else frozenset({0}),
        alt_unusable=spec.level == "manifest",
        why="real exports have this; it changes nothing (exit 0, identical output)",
    )
    add("crlf-lf-mix", "every other line ends in CRLF", lambda b: dm.with_lines(b, dm.crlf_mix), clean)
    add("bom", "a UTF-8 byte order mark before the header", lambda b: b"\xef\xbb\xbf" + b, clean)
    order = dm.shuffled(random.Random(rng.random()))
    add("shuffled-columns", "the columns in another order", lambda b: dm.rewrite_columns(b, order), clean)
    add(
        "extra-column",
        "an extra column ext_fuzz in the middle",
        lambda b: dm.rewrite_columns(b, lambda h: list(range(len(h))), ("ext_fuzz", "v")),
        clean,
    )
    for group in spec.drop:
        add(
            "missing-column-" + "-".join(group),
            f"the required column(s) {', '.join(group)} removed",
            lambda b, group=group: dm.rewrite_columns(b, dm.without(group)),
            file_level(name, "missing"),
        )
    out.extend(_duplicated(d, name, rng))
    return out


def _duplicated(d: District, name: str, rng: random.Random) -> list[Variant]:
    spec, f = SPECS[name], d.file(name)
    line = rng.choice(d.attendance_lines(absences=True)) if name == "attendance.csv" else rng.choice(spec.rows(d))
    copy = f.lines[line - 1]
    edit = lambda b: dm.with_lines(b, lambda ls: dm.insert_after(ls, line, copy))  # noqa: E731
    ref = (RowRef(name, line + 1),)
    why = f"line {line + 1} repeats line {line}: the second one must be named and not counted twice"
    expect = {
        "ignored": Expect("clean", frozenset({0, 3}), why=IGNORED),
        "manifest": Expect("clean", frozenset({0}), alt_unusable=True, why=MANIFEST),
        "demographics": Expect("row", frozenset({0, 3}), ref, d.affected(name, line), why=DEMOGRAPHICS),
    }.get(spec.level)
    if expect is None and name == "calendar.csv":
        expect = Expect("row", frozenset({0, 3}), ref, frozenset(), why=why + " (the same day twice: a warning)")
    if expect is None:
        expect = Expect("row", frozenset({3}), ref, d.affected(name, line), why=why)
    v = Variant(
        f"file-{name.removesuffix('.csv')}-duplicated-row",
        "file-damage",
        f"line {line} duplicated",
        folder_with({name: edit}),
        expect,
    )
    return [v]
