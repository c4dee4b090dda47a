"""A district export (folder or .zip) as a set of named text files, with its OneRoster manifest read."""

from __future__ import annotations

import csv
import difflib
import io
import os
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from sis2fhir.config import ZipLimits
from sis2fhir.errors import ExportError
from sis2fhir.read.zipsafety import READ_ERRORS, Guarded, check_zip, damaged
from sis2fhir.report import RowIssue, RowReport

MANIFEST = "manifest.csv"
FILE_MODES = ("bulk", "delta", "absent")
SUPPORTED_VERSIONS = ("1.1", "1.2")

# file.<name> keys of the OneRoster 1.1 and 1.2 CSV manifests, plus the files this project adds.
ONEROSTER_FILES = (
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItems",
    "orgs",
    "resources",
    "results",
    "users",
    # 1.2
    "roles",
    "userProfiles",
    "userResources",
    "scoreScales",
    "lineItemLearningObjectiveIds",
    "lineItemScoreScales",
    "resultLearningObjectiveIds",
    "resultScoreScales",
    # sis2fhir
    "attendance",
    "calendar",
    "consents",
)
OTHER_MANIFEST_KEYS = ("manifest.version", "oneroster.version", "source.systemName", "source.systemCode")
_KNOWN_KEYS = {k.lower(): k for k in (*OTHER_MANIFEST_KEYS, *(f"file.{n}" for n in ONEROSTER_FILES))}

# Files that only Microsoft School Data Sync (SDS) v2.1 CSV exports carry; OneRoster has neither.
SDS_ONLY_FILES = ("relationships.csv", "userflags.csv")


@dataclass(slots=True)
class Manifest:
    """manifest.csv: the OneRoster version and, per file, whether it is a bulk snapshot, a delta or absent."""

    version: str
    files: dict[str, str] = field(default_factory=dict)  # "users" -> bulk | delta | absent
    properties: dict[str, str] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)

    def mode(self, name: str) -> str:
        """bulk | delta | absent for a file named with or without `.csv`, case-insensitively."""
        key = name.removesuffix(".csv").lower()
        for k, v in self.files.items():
            if k.lower() == key:
                return v
        return "absent"


class Export:
    """The files of one export, found by name case-insensitively; text is UTF-8 with any BOM removed."""

    def __init__(self, source: Path, members: dict[str, str], archive: zipfile.ZipFile | None) -> None:
        self.source = source
        self._members = members  # lower-case file name -> path inside the folder or zip
        self._zip = archive
        self.manifest = Manifest(version="")
        self._reported_to: weakref.WeakSet[RowReport] = weakref.WeakSet()

    @property
    def version(self) -> str:
        return self.manifest.version

    def has(self, name: str) -> bool:
        return name.lower() in self._members

    def names(self) -> list[str]:
        """The export's file names (as the district spelled them), sorted."""
        return sorted(PurePosixPath(m).name for m in self._members.values())

    def actual_name(self, name: str) -> str:
        """The file name as it appears in the export (e.g. `userprofiles.csv` for `userProfiles.csv`)."""
        return PurePosixPath(self._members[name.lower()]).name

    @property
    def is_zip(self) -> bool:
        return self._zip is not None

    def path_of(self, name: str) -> Path:
        """The file's path on disk (a folder export only)."""
        if self._zip is not None:
            raise ExportError(f"{name} is inside the zip {self.source}; it has no path of its own.")
        return self.source / self._members[name.lower()]

    def open_binary(self, name: str) -> io.BufferedIOBase:
        """The file's bytes; any failure to read them (now or while streaming) is an ExportError naming it."""
        member = self._members.get(name.lower())
        if member is None:
            raise ExportError(f"{name} is not in the export {self.source}.")
        what = f"{member} in the zip {self.source}" if self._zip is not None else f"{self.source / member}"
        try:
            raw: Any = self._zip.open(member) if self._zip is not None else (self.source / member).open("rb")
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, or a method zipfile cannot read
            raise ExportError(f"{what} cannot be read ({exc}). Zip the export again without a password.") from None
        except READ_ERRORS as exc:
            raise damaged(what, exc) from None
        return Guarded(raw, what)

    def open_text(self, name: str) -> TextIO:
        """The file as text: UTF-8, BOM stripped, newlines left to the csv module (CRLF and LF)."""
        return io.TextIOWrapper(self.open_binary(name), encoding="utf-8-sig", newline="")  # type: ignore[type-var]

    def add_manifest_issues(self, report: RowReport) -> None:
        """Copy what was found wrong in manifest.csv into `report` (once per report)."""
        if report in self._reported_to:
            return
        report.issues.extend(self.manifest.issues)
        self._reported_to.add(report)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _members_of_folder(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(the folder's files, relative; entries that look like export files but cannot be read as one, with why)."""
    if not os.access(root, os.R_OK | os.X_OK):
        raise ExportError(f"the folder {root} cannot be read (permission denied). Make it readable for this user.")
    unreadable: list[str] = []
    files: list[str] = []
    odd: list[tuple[str, str]] = []
    for here, dirs, names in os.walk(root, onerror=lambda e: unreadable.append(str(e.filename)), followlinks=False):
        rel = Path(here).relative_to(root)
        for d in dirs:
            if d.lower().endswith((".csv", ".xml")):
                odd.append(((rel / d).as_posix(), "is a folder, not a file"))
        for n in names:
            full = Path(here) / n
            if full.is_file():
                files.append((rel / n).as_posix())
            elif n.lower().endswith((".csv", ".xml")):
                why = "is a symbolic link that loops or points nowhere" if full.is_symlink() else "is not a file"
                odd.append(((rel / n).as_posix(), why))
    if unreadable:
        listed = ", ".join(sorted(unreadable)[:3])
        raise ExportError(f"the export folder has subfolders that cannot be read (permission denied): {listed}.")
    return files, odd


def _choose_members(paths: list[str]) -> dict[str, str]:
    """File name -> path, from the folder that holds manifest.csv (the root when none or several do)."""
    paths = [p for p in paths if not p.startswith("__MACOSX/") and not PurePosixPath(p).name.startswith("._")]
    manifest_dirs = {str(PurePosixPath(p).parent) for p in paths if PurePosixPath(p).name.lower() == MANIFEST}
    base = manifest_dirs.pop() if len(manifest_dirs) == 1 else "."
    if base == "." and not manifest_dirs:
        top = {PurePosixPath(p).parts[0] for p in paths}
        if len(top) == 1 and all(len(PurePosixPath(p).parts) > 1 for p in paths):
            base = top.pop()  # a zip whose files all sit in one folder
    members: dict[str, str] = {}
    for p in paths:
        pp = PurePosixPath(p)
        if str(pp.parent) == base:
            other = members.get(pp.name.lower())
            if other is not None:
                raise ExportError(
                    f"the export holds both {other} and {p}: one file under two spellings of its name. "
                    "Keep only the right one."
                )
            members[pp.name.lower()] = p
    return members


def _base_of(members: dict[str, str]) -> str:
    return str(PurePosixPath(next(iter(members.values()))).parent) if members else "."


def open_export(path: Path, limits: ZipLimits | None = None) -> Export:
    """Open a district export (a folder or a .zip); ExportError when it cannot be used at all."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise ExportError(f"{path} is a symbolic link that loops or points nowhere. Give the export itself.")
        raise ExportError(f"{path} does not exist. Give the folder or .zip holding the district's export.")
    archive: zipfile.ZipFile | None = None
    if path.is_dir():
        files, odd = _members_of_folder(path)
        members = _choose_members(files)
        base = _base_of(members)
        for rel, why in odd:
            if str(PurePosixPath(rel).parent) == base:
                raise ExportError(f"{rel} in the export folder {path} {why}. Put the real file there.")
    else:
        if not os.access(path, os.R_OK):
            raise ExportError(f"{path} cannot be read (permission denied). Make it readable for this user.")
        try:
            archive = zipfile.ZipFile(path)
            infos = archive.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            if archive is not None:
                archive.close()
            raise ExportError(
                f"{path} is neither a folder nor a readable .zip ({exc}). "
                "Give the folder of CSV files or the .zip the SIS produced."
            ) from None
        try:
            check_zip(path, infos, limits or ZipLimits())
            members = _choose_members([i.filename for i in infos if not i.is_dir()])
            base = _base_of(members)
            for i in infos:
                p = PurePosixPath(i.filename.rstrip("/"))
                if i.is_dir() and str(p.parent) == base and p.name.lower().endswith((".csv", ".xml")):
                    raise ExportError(f"{i.filename} in the zip {path} is a folder, not a file. Zip the real file.")
        except ExportError:
            archive.close()
            raise
    export = Export(path, members, archive)
    try:
        if not export.has(MANIFEST):
            _refuse_without_manifest(export)
        export.manifest = _read_manifest(export)
    except ExportError:
        export.close()
        raise
    except (UnicodeDecodeError, csv.Error, RuntimeError, zipfile.BadZipFile) as exc:
        export.close()
        raise ExportError(f"{MANIFEST} in {path} cannot be read ({exc}). Save it as UTF-8 CSV.") from None
    return export


def _header_of(export: Export, name: str) -> list[str]:
    try:
        with export.open_text(name) as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (UnicodeDecodeError, csv.Error):
        return []


def _refuse_without_manifest(export: Export) -> None:
    found = export.names()
    sds_markers = [n for n in found if n.lower() in SDS_ONLY_FILES]
    if export.has("enrollments.csv") and "sourcedid" not in {h.lower() for h in _header_of(export, "enrollments.csv")}:
        sds_markers.append("enrollments.csv without a sourcedId column")
    if sds_markers:
        raise ExportError(
            f"{export.source} is a Microsoft School Data Sync (SDS) v2.1 CSV export, not OneRoster: "
            f"found {', '.join(sds_markers)} and no manifest.csv. sis2fhir reads OneRoster 1.1 or 1.2 CSV "
            "(manifest.csv with oneroster.version, orgs.csv, users.csv, enrollments.csv, "
            "academicSessions.csv). "
            "Ask the SIS for its OneRoster CSV export instead of the SDS one."
        )
    listing = ", ".join(found[:12]) + (" ..." if len(found) > 12 else "") if found else "no files"
    raise ExportError(
        f"{export.source} has no manifest.csv (found: {listing}). A OneRoster CSV export starts with "
        "manifest.csv naming oneroster.version 1.1 or 1.2; export it again from the SIS as OneRoster CSV."
    )


def _read_manifest(export: Export) -> Manifest:
    from sis2fhir.read.csvfile import open_csv  # csvfile reads through Export: imported here, not at the top
    from sis2fhir.read.header import Columns

    props: dict[str, str] = {}
    files: dict[str, str] = {}
    name = export.actual_name(MANIFEST)
    report = RowReport()  # damaged rows (bad bytes, stray quotes) as in every other file, then kept as issues

    def warn(line: int, column: str, code: str, message: str) -> None:
        report.add(name, line, column, code, message, "warning")

    table = open_csv(export, MANIFEST, report, Columns((), optional=("propertyName", "value")))
    assert table is not None  # open_export checked that the file is there
    rows: list[tuple[int, list[str]]] = []
    if table.header_found and [h.lower() for h in table.names[:2]] != ["propertyname", "value"]:
        warn(1, "", "manifest-header", "manifest.csv should start with the header propertyName,value.")
        if table.names and table.names[0].lower() in _KNOWN_KEYS:  # no header: its first line is a row
            rows.append((1, table.names[:2]))
    rows += list(table.rows())
    last = rows[-1][0] if rows else 0
    for line, row in rows:
        if not row or not any(c.strip() for c in row):
            continue
        key = row[0].strip()
        value = row[1].strip() if len(row) > 1 else ""
        canonical = _KNOWN_KEYS.get(key.lower())
        if line == last and table.unterminated:
            warn(
                line,
                "value",
                "manifest-cut-short",
                f"manifest.csv ends inside its last line ('{key}' is '{value}', with no line end after it): the "
                "file may have been cut short in transfer; the value is read as it is. Check that the export is "
                "complete and transfer it again.",
            )
        if canonical is None:
            close = difflib.get_close_matches(key.lower(), list(_KNOWN_KEYS), n=1, cutoff=0.8)
            if close:
                canonical = _KNOWN_KEYS[close[0]]
                warn(
                    line,
                    "propertyName",
                    "manifest-typo",
                    f"Manifest key '{key}' is not a OneRoster key; read as '{canonical}'. Correct it to '{canonical}'.",
                )
            elif key.lower().startswith("file."):
                warn(
                    line,
                    "propertyName",
                    "manifest-unknown-key",
                    f"Manifest key '{key}' names a file sis2fhir does not know; ignored.",
                )
                continue
            else:
                props[key] = value  # vendor keys (e.g. source.*) are kept
                continue
        if canonical.startswith("file."):
            mode = value.lower()
            if mode not in FILE_MODES:
                mode = "bulk" if export.has(f"{canonical[5:]}.csv") else "absent"
                warn(
                    line,
                    "value",
                    "manifest-bad-mode",
                    f"'{canonical}' is '{value}', not bulk, delta or absent; read as {mode} "
                    "because the file is " + ("present." if mode == "bulk" else "not in the export."),
                )
            files[canonical[5:]] = mode
        else:
            if canonical == "manifest.version" and value != "1.0":  # OneRoster 1.1 and 1.2 both say 1.0
                warn(line, "value", "manifest-bad-value", f"manifest.version is '{value}', not 1.0; ignored.")
            props[canonical] = value
    version = props.get("oneroster.version", "")
    if not version:
        version = "1.2" if export.has("roles.csv") else "1.1"
        warn(
            0,
            "oneroster.version",
            "manifest-no-version",
            f"manifest.csv does not say oneroster.version; read as {version} "
            f"({'roles.csv is' if version == '1.2' else 'no roles.csv is'} present). Add it to the manifest.",
        )
    elif version[:3] not in SUPPORTED_VERSIONS:
        raise ExportError(
            f"manifest.csv says oneroster.version {version}; sis2fhir reads OneRoster 1.1 and 1.2 CSV. "
            "Export OneRoster 1.1 or 1.2 from the SIS."
        )
    version = version[:3]
    for fname, mode in files.items():
        present = export.has(f"{fname}.csv")
        if mode == "absent" and present:
            warn(
                0,
                f"file.{fname}",
                "manifest-says-absent",
                f"manifest.csv says file.{fname} is absent but {fname}.csv is in the export; it is read anyway.",
            )
        elif mode != "absent" and not present:
            warn(
                0,
                f"file.{fname}",
                "manifest-file-missing",
                f"manifest.csv says file.{fname} is {mode} but {fname}.csv is not in the export.",
            )
    return Manifest(version=version, files=files, properties=props, issues=list(report.issues))
