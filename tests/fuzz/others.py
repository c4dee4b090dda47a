"""Variants of kinds zip, path, edfi, config, option and gate (the whole run, not one row)."""

from __future__ import annotations

import os
import random
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.fuzz import damage as dm
from tests.fuzz.district import AS_OF, District
from tests.fuzz.files import folder_with
from tests.fuzz.model import Bases, Call, Expect, RowRef, Variant

EDFI = "StudentAttendance.xml"
NOTHING = "nothing may be sent"


def unusable(why: str, rows: tuple[RowRef, ...] = (), exits: frozenset[int] = frozenset({1})) -> Expect:
    return Expect("unusable", exits, rows, why=why)


CLEAN = Expect("clean", frozenset({0}), why="the same export in another valid shape: exit 0, identical output")


# ---------------------------------------------------------------- zips


def _zip_variant(
    tag: str, what: str, make: Callable[[Path, Path], None], expect: Expect, heavy: bool = False
) -> Variant:
    def build(work: Path, bases: Bases) -> Call:
        target = work / "district.zip"
        make(bases.csv, target)
        return Call(
            target, out=work / "out", must_not_exist=[work.parent / "fuzz-escaped.csv", Path("/tmp/fuzz-escaped.csv")]
        )

    return Variant(f"zip-{tag}", "zip", what, build, expect, heavy=heavy)


def _patched(member: str, patch: Callable[[bytes, str], bytes]) -> Callable[[Path, Path], None]:
    def make(folder: Path, target: Path) -> None:
        dm.zip_with(folder, target, [])
        target.write_bytes(patch(target.read_bytes(), member))

    return make


def _cut(fraction: float) -> Callable[[Path, Path], None]:
    def make(folder: Path, target: Path) -> None:
        dm.zip_folder(folder, target)
        data = target.read_bytes()
        target.write_bytes(data[: int(len(data) * fraction)])

    return make


def zip_variants() -> list[Variant]:
    out = [
        _zip_variant("valid", "the example as one zip (control)", lambda f, t: dm.zip_folder(f, t), CLEAN),
        _zip_variant(
            "nested-folder", "every file under district/", lambda f, t: dm.zip_folder(f, t, "district/"), CLEAN
        ),
        _zip_variant(
            "lzma", "LZMA-compressed members", lambda f, t: dm.zip_folder(f, t, method=zipfile.ZIP_LZMA), CLEAN
        ),
        _zip_variant(
            "macosx-junk",
            "with __MACOSX/._ files as macOS Archive Utility writes them",
            lambda f, t: dm.zip_with(f, t, [("__MACOSX/._attendance.csv", b"\x00\x05\x16\x07junk")]),
            CLEAN,
        ),
    ]
    corrupt = "a zip member that cannot be read intact is a broken transfer: the export is unusable"
    for member in ("attendance.csv", "users.csv", "consents.csv", "calendar.csv"):
        out.append(
            _zip_variant(
                f"bad-crc-{member.removesuffix('.csv')}",
                f"one byte of {member} flipped (CRC-32 mismatch)",
                _patched(member, dm.zip_bad_crc),
                unusable(corrupt),
            )
        )
    for fraction in (0.1, 0.5, 0.95, 0.9999):
        out.append(
            _zip_variant(f"truncated-{fraction}", f"the zip cut at {fraction:.2%}", _cut(fraction), unusable(corrupt))
        )
    for member in ("attendance.csv", "consents.csv"):
        out.append(
            _zip_variant(
                f"encrypted-{member.removesuffix('.csv')}",
                f"{member} flagged as encrypted",
                _patched(member, lambda b, m: dm.zip_patch_member(b, m, flags=1)),
                unusable("an encrypted member cannot be read: say so, exit 1"),
            )
        )
    for member, method in (("attendance.csv", 99), ("users.csv", 98), ("consents.csv", 19)):
        out.append(
            _zip_variant(
                f"unsupported-compression-{method}-{member.removesuffix('.csv')}",
                f"{member} with compression method {method} (AES / PPMd / LZ77)",
                _patched(member, lambda b, m, method=method: dm.zip_patch_member(b, m, method=method)),
                unusable("a member compressed with a method sis2fhir cannot read: exit 1"),
            )
        )
    dup = "two members with one name: which one is the export? (issue 6: a duplicate member sent everyone as 0 absent)"
    for member, content in (
        ("attendance.csv", b""),
        ("attendance.csv", b"studentSourcedId,studentIdentifier,schoolSourcedId,date,category,duration,reason\n"),
        ("users.csv", b"sourcedId,role\n"),
        ("consents.csv", None),
    ):
        tag = f"duplicate-member-{member.removesuffix('.csv')}-{len(content) if content is not None else 'same'}"

        def make(f: Path, t: Path, member: str = member, content: bytes | None = content) -> None:
            dm.zip_with(f, t, [(member, content if content is not None else (f / member).read_bytes())])

        out.append(_zip_variant(tag, f"{member} twice", make, unusable(dup)))
    for i, name in enumerate(
        (
            "../fuzz-escaped.csv",
            "../../../../tmp/fuzz-escaped.csv",
            "/tmp/fuzz-escaped.csv",
            "..\\fuzz-escaped.csv",
        )
    ):
        out.append(
            _zip_variant(
                f"path-traversal-{i}",
                f"an extra member named {name}",
                lambda f, t, name=name: dm.zip_with(f, t, [(name, b"a,b\n1,2\n")]),
                Expect(
                    "clean",
                    frozenset({0}),
                    alt_unusable=True,
                    why="a member that points outside the archive is never written anywhere; ignoring it (the "
                    "rest is a valid export) or refusing the archive are both safe",
                ),
            )
        )
    out.append(
        _zip_variant(
            "path-traversal-attendance",
            "attendance.csv only as ../attendance.csv",
            lambda f, t: dm.zip_with(
                f, t, [("../attendance.csv", (f / "attendance.csv").read_bytes())], ("attendance.csv",)
            ),
            unusable("no readable attendance.csv in the archive"),
        )
    )
    bomb = "a member that inflates more than 1000:1 is a zip bomb: refuse it before reading it (a ratio limit)"
    for member in ("attendance.csv", "consents.csv"):
        out.append(
            _zip_variant(
                f"bomb-ratio-{member.removesuffix('.csv')}",
                f"{member} followed by 64 MiB of newlines (about 1000:1)",
                lambda f, t, member=member: dm.zip_bomb_member(f, t, member, 64 << 20),
                unusable(bomb),
                heavy=True,
            )
        )
    out += [
        _zip_variant(
            "not-a-zip",
            "random bytes named .zip",
            lambda f, t: t.write_bytes(random.Random(7).randbytes(4096)),
            unusable("not a zip"),
        ),
        _zip_variant(
            "empty-zip",
            "a valid zip with no members",
            lambda f, t: zipfile.ZipFile(t, "w").close(),
            unusable("no files"),
        ),
        _zip_variant(
            "two-exports",
            "two complete exports in a/ and b/",
            lambda f, t: (dm.zip_folder(f, t, "a/"), _append(f, t, "b/")),
            unusable("two manifests: which export is meant? refuse rather than guess"),
        ),
    ]
    return out


def _append(folder: Path, target: Path, prefix: str) -> None:
    with zipfile.ZipFile(target, "a") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, prefix + p.name)


# ---------------------------------------------------------------- paths and permissions


def _path_variant(
    tag: str, what: str, make: Callable[[Path, Path], Call], expect: Expect, root_skip: str = ""
) -> Variant:
    def build(work: Path, bases: Bases) -> Call:
        export = work / "export"
        shutil.copytree(bases.csv, export)
        return make(work, export)

    return Variant(f"path-{tag}", "path", what, build, expect, root_skip)


def _replace(name: str, how: str) -> Callable[[Path, Path], Call]:
    def make(work: Path, export: Path) -> Call:
        p = export / name
        p.unlink()
        if how == "dir":
            p.mkdir()
            (p / "part-0001.csv").write_bytes(b"x\n")
        elif how == "fifo":
            os.mkfifo(p)
        elif how == "loop":
            p.symlink_to(p.name)
        elif how == "dangling":
            p.symlink_to(work / "no-such-file.csv")
        return Call(export, out=work / "out")

    return make


def _chmod(name: str) -> Callable[[Path, Path], Call]:
    def make(work: Path, export: Path) -> Call:
        (export / name).chmod(0)
        return Call(export, out=work / "out")

    return make


def path_variants() -> list[Variant]:
    bad_path = frozenset({1, 2})
    why_path = "an export path that is not a folder or zip cannot be used: exit 1 (or 2 as a usage error), " + NOTHING
    out = [
        _path_variant(
            "missing-export",
            "the export path does not exist",
            lambda w, e: Call(w / "nope", out=w / "out"),
            unusable(why_path, exits=bad_path),
        ),
        _path_variant(
            "export-is-csv",
            "the export path is attendance.csv itself",
            lambda w, e: Call(e / "attendance.csv", out=w / "out"),
            unusable(why_path, exits=bad_path),
        ),
        _path_variant(
            "empty-folder",
            "an empty folder",
            lambda w, e: (shutil.rmtree(e), e.mkdir(), Call(e, out=w / "out"))[-1],
            unusable("no files"),
        ),
        _path_variant(
            "export-symlink-loop",
            "the export is a symlink to itself",
            lambda w, e: ((w / "loop").symlink_to("loop"), Call(w / "loop", out=w / "out"))[-1],
            unusable(why_path, exits=bad_path),
        ),
        _path_variant(
            "subfolder-loop",
            "the export holds a symlink to itself (sub -> .)",
            lambda w, e: ((e / "sub").symlink_to("."), Call(e, out=w / "out"))[-1],
            Expect(
                "clean", frozenset({0}), alt_unusable=True, why="the loop is not followed forever; the export is fine"
            ),
        ),
    ]
    for name in ("attendance.csv", "users.csv", "consents.csv", "calendar.csv"):
        stem = name.removesuffix(".csv")
        why = f"{name} is there but is not a readable file: the export is unusable (consents: revocations unknown)"
        out += [
            _path_variant(f"{stem}-is-directory", f"{name} is a directory", _replace(name, "dir"), unusable(why)),
            _path_variant(
                f"{stem}-symlink-loop", f"{name} is a symlink to itself", _replace(name, "loop"), unusable(why)
            ),
        ]
    out += [
        _path_variant(
            "attendance-fifo",
            "attendance.csv is a named pipe (no writer: must not hang)",
            _replace("attendance.csv", "fifo"),
            unusable("not a regular file"),
        ),
        _path_variant(
            "attendance-dangling",
            "attendance.csv is a dangling symlink",
            _replace("attendance.csv", "dangling"),
            unusable("no attendance"),
        ),
    ]
    root = "root reads every file whatever its mode; CI runs as root (a directory in place of a file covers it)"
    for name in ("attendance.csv", "users.csv"):
        out.append(
            _path_variant(
                f"{name.removesuffix('.csv')}-unreadable",
                f"{name} mode 000",
                _chmod(name),
                unusable(f"{name} cannot be read: exit 1, {NOTHING}"),
                root,
            )
        )
    out_why = "--out / --report are checked before the run starts (issue 6, item 5): exit 1 or 2, " + NOTHING
    bad_out = Expect("usage", frozenset({1, 2}), why=out_why)
    out += [
        _path_variant(
            "out-is-file",
            "--out is an existing file",
            lambda w, e: ((w / "f").write_text("x"), Call(e, out=w / "f"))[-1],
            bad_out,
        ),
        _path_variant(
            "out-under-file",
            "--out is below a file",
            lambda w, e: ((w / "f").write_text("x"), Call(e, out=w / "f" / "out"))[-1],
            bad_out,
        ),
        _path_variant(
            "out-in-proc",
            "--out under /proc (not creatable, even by root)",
            lambda w, e: Call(e, out=Path("/proc/sis2fhir-fuzz/out")),
            bad_out,
        ),
        _path_variant(
            "report-is-dir",
            "--report is a directory",
            lambda w, e: ((w / "rep").mkdir(), Call(e, out=w / "out", args=["--report", str(w / "rep")]))[-1],
            bad_out,
        ),
        _path_variant(
            "report-under-file",
            "--report is below a file",
            lambda w, e: ((w / "f").write_text("x"), Call(e, out=w / "out", args=["--report", str(w / "f" / "r.csv")]))[
                -1
            ],
            bad_out,
        ),
        _path_variant(
            "report-in-proc",
            "--report under /proc",
            lambda w, e: Call(e, out=w / "out", args=["--report", "/proc/sis2fhir-fuzz/rows-report.csv"]),
            bad_out,
        ),
        _path_variant(
            "out-read-only",
            "--out is a read-only folder",
            lambda w, e: ((w / "out").mkdir(mode=0o555), Call(e, out=w / "out"))[-1],
            bad_out,
            root,
        ),
    ]
    return out


# ---------------------------------------------------------------- Ed-Fi XML


def _edfi_events(bases_lines: list[bytes]) -> list[tuple[int, str]]:
    """(line of <StudentSchoolAttendanceEvent>, EventDate) for each event of the generated Ed-Fi file."""
    found = []
    for i, ln in enumerate(bases_lines):
        if ln.strip() == b"<StudentSchoolAttendanceEvent>":
            m = re.search(rb"<EventDate>([^<]*)</EventDate>", bases_lines[i + 1])
            found.append((i + 1, m.group(1).decode() if m else ""))
    return found


def _edfi(
    tag: str, what: str, edit: Callable[[bytes], bytes] | None, expect: Expect, extra: dict | None = None
) -> Variant:
    edits: dict = {EDFI: edit} if edit is not None else {}
    edits.update(extra or {})
    return Variant(f"edfi-{tag}", "edfi", what, folder_with(edits, base="edfi"), expect)


def edfi_variants(edfi_xml: bytes, d: District, rng: random.Random) -> list[Variant]:
    lines = edfi_xml.splitlines(keepends=True)
    events = [(n, day) for n, day in _edfi_events(lines) if day <= AS_OF.isoformat()]
    stop = (
        "Ed-Fi XML that does not parse cannot be read past the error: stop (exit 1), name the file and line, " + NOTHING
    )

    def at(line: int, old: bytes, new: bytes) -> Callable[[bytes], bytes]:
        return lambda b: dm.with_lines(b, lambda ls: dm.replace_line(ls, line, ls[line - 1].replace(old, new, 1)))

    def in_event(start: int, old: bytes, new: bytes) -> Callable[[bytes], bytes]:
        def edit(b: bytes) -> bytes:
            ls = b.splitlines(keepends=True)
            for k in range(start, start + 5):
                if old in ls[k - 1]:
                    ls[k - 1] = ls[k - 1].replace(old, new, 1)
                    if new.endswith(b"<!--"):  # the old value becomes a comment, which the parser drops
                        ls[k - 1] = ls[k - 1].replace(b"</", b"--></", 1)
                    break
            return b"".join(ls)

        return edit

    def student_of(start: int) -> frozenset[str]:
        m = re.search(rb"<StudentUniqueId>([^<]*)<", lines[start + 1])
        return frozenset({d.state_ids[m.group(1).decode()]}) if m else frozenset()

    out = [
        _edfi("valid", "the generated Ed-Fi export (control)", None, CLEAN),
        _edfi("empty", "a 0-byte StudentAttendance.xml", lambda b: b"", unusable("no attendance")),
        _edfi(
            "not-xml",
            "CSV text in the .xml file",
            lambda b: b"studentSourcedId,date\nstu-0000001,2026-01-05\n",
            unusable("no attendance"),
        ),
        _edfi(
            "garbage-start",
            "the first line is garbage",
            lambda b: b"<<<not xml>>>\n" + b.split(b"\n", 1)[1],
            unusable("no attendance"),
        ),
        _edfi(
            "no-events",
            "the root with no events",
            lambda b: b"".join(lines[:2]) + lines[-1],
            unusable("empty attendance: exit 1 (issue 6)"),
        ),
        _edfi(
            "section-events-only",
            "every event is a StudentSectionAttendanceEvent",
            lambda b: b.replace(b"StudentSchoolAttendanceEvent", b"StudentSectionAttendanceEvent"),
            unusable("class-period attendance only: no school-day attendance"),
        ),
        _edfi(
            "wrong-namespace",
            "xmlns is http://example.org/not-ed-fi",
            lambda b: b.replace(b"http://ed-fi.org/5.2.0", b"http://example.org/not-ed-fi", 1),
            unusable("not an Ed-Fi namespace: it is not the Ed-Fi interchange, whatever the root's name; refuse"),
        ),
        _edfi(
            "no-namespace",
            "no xmlns at all",
            lambda b: b.replace(b' xmlns="http://ed-fi.org/5.2.0"', b"", 1),
            Expect(
                "clean", frozenset({0}), alt_unusable=True, why="the Ed-Fi root without a namespace: read or refuse"
            ),
        ),
        _edfi(
            "wrong-root",
            "the root is InterchangeStudent",
            lambda b: b.replace(b"InterchangeStudentAttendance", b"InterchangeStudent"),
            unusable("no InterchangeStudentAttendance: no attendance"),
        ),
        _edfi(
            "entity-expansion",
            "a DOCTYPE with nested entities (billion laughs)",
            lambda b: b.replace(
                b"<InterchangeStudentAttendance",
                b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
                b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>\n'
                b"<InterchangeStudentAttendance",
                1,
            ).replace(b"<EventDuration>1</EventDuration>", b"<EventDuration>&f;</EventDuration>", 1),
            unusable("a DTD with entities has no place in an Ed-Fi interchange: refuse it, never expand it"),
        ),
    ]
    for fraction in (0.3, 0.75):
        cut = int(len(edfi_xml) * fraction)
        out.append(
            _edfi(
                f"truncated-{fraction}",
                f"the file cut at {fraction:.0%} (mid-element)",
                lambda b, cut=cut: b[:cut],
                unusable(stop, (RowRef(EDFI),)),
            )
        )
    for i, (start, _) in enumerate(rng.sample(events, 3)):
        line = start + 1
        out.append(
            _edfi(
                f"broken-tag-{i}",
                f"a broken tag at line {line}",
                at(line, b"<EventDate>", b"<EventDate <<"),
                unusable(stop, (RowRef(EDFI, line),)),
            )
        )
    for tag, raw in (("invalid-utf8", b"\xff"), ("latin1", b"\xe9"), ("nul", b"\x00")):
        start, _ = rng.choice(events)
        line = start + 3
        out.append(
            _edfi(
                f"{tag}-byte",
                f"{raw!r} inside SchoolId at line {line}",
                at(line, b"<SchoolId>", b"<SchoolId>" + raw),
                unusable(
                    stop + " (a byte that is not UTF-8 or a NUL makes the document ill-formed)", (RowRef(EDFI, line),)
                ),
            )
        )
    row_cases = (
        (
            "unknown-descriptor",
            b"#In Attendance<",
            b"#Teleported<",
            ("AttendanceEventCategory", "AttendanceEventCategoryDescriptor"),
        ),
        ("unknown-student", b"<StudentUniqueId>", b"<StudentUniqueId>99", ("StudentUniqueId",)),
        ("unknown-school", b"<SchoolId>", b"<SchoolId>99", ("SchoolId",)),
        ("impossible-date", b"<EventDate>", b"<EventDate>2026-02-30<!--", ("EventDate",)),
        ("bad-duration", b"<EventDuration>1<", b"<EventDuration>1.5<", ("EventDuration",)),
    )
    for tag, old, new, columns in row_cases:
        pool = [(s, day) for s, day in events if old in b"".join(lines[s - 1 : s + 5])]
        for start, _ in rng.sample(pool, 2):
            out.append(
                _edfi(
                    f"{tag}-l{start}",
                    f"event at line {start}: {new.decode(errors='replace')}",
                    in_event(start, old, new),
                    Expect(
                        "row",
                        frozenset({3}),
                        (RowRef(EDFI, start, columns),),
                        student_of(start),
                        why="one bad event costs only its event: named at the line it starts on",
                    ),
                )
            )
    start, _ = rng.choice(events)
    block = b"".join(lines[start - 1 : start + 5])
    out.append(
        _edfi(
            f"duplicate-event-l{start}",
            f"the event at line {start} twice",
            lambda b: b.replace(block, block + block, 1),
            Expect(
                "row",
                frozenset({3}),
                (RowRef(EDFI, start + 6),),
                student_of(start),
                why="a second event for the same day is a conflict",
            ),
        )
    )
    both = Expect(
        "clean", frozenset({0}), why="attendance.csv and Ed-Fi XML both: one is read (a warning), numbers as the CSV"
    )
    out.append(Variant("edfi-and-csv", "edfi", "attendance.csv and StudentAttendance.xml both", _with_both, both))
    return out


def _with_both(work: Path, bases: Bases) -> Call:
    export = work / "export"
    shutil.copytree(bases.csv, export)
    shutil.copy(bases.edfi / EDFI, export / EDFI)
    return Call(export, out=work / "out")
