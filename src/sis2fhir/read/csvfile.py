"""The one CSV reader behind every export file: header matching, line numbers, ragged rows, row counts."""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sis2fhir.read.export import Export, ExportError
from sis2fhir.report import RowReport

# Header misspellings seen in real OneRoster exports (lepo-project, moodle-enrol_oneroster test data).
KNOWN_TYPOS: dict[str, str] = {
    "datalastmodified": "dateLastModified",
    "prefferedgivenname": "preferredGivenName",
    "prefferedmiddlename": "preferredMiddleName",
    "prefferedfamilyname": "preferredFamilyName",
    "userid": "userIds",
    "grade": "grades",
    "agents": "agentSourcedIds",
}


@dataclass(frozen=True, slots=True)
class Columns:
    """A reader's needs from a file: `required` (rows useless without) and `expected` (warn if absent)."""

    required: tuple[str, ...]
    expected: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # known columns, read when present, no warning when absent
    aliases: dict[str, str] = field(default_factory=dict)  # lower-case other name -> column (no warning)
    one_of: tuple[str, ...] = ()  # at least one of these must be present


@dataclass(frozen=True, slots=True)
class FilePart:
    """A byte range of a CSV file that starts at a line start (for reading one file in several processes)."""

    start: int
    end: int
    line: int  # physical line number of the first line in the range
    report_to: RowReport | None = None  # where header warnings go (a throwaway report: the first part has them)


class _Limited(io.RawIOBase):
    """At most `size` bytes of a binary stream."""

    def __init__(self, raw: io.BufferedIOBase, size: int) -> None:
        self._raw, self._left = raw, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        n = self._raw.readinto(view)
        self._left -= n or 0
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


class CsvTable:
    """One CSV file opened with its header resolved: `columns` maps our column names to positions."""

    def __init__(
        self, export: Export, name: str, report: RowReport, spec: Columns, part: FilePart | None = None
    ) -> None:
        self.export = export
        self.file = export.actual_name(name)
        # header warnings of a second or later part go to a throwaway report: the first part gives them
        self.report = part.report_to if part is not None and part.report_to is not None else report
        self._stream = export.open_text(name)
        self._reader = csv.reader(self._stream)
        self.first_line = 1  # the physical line before the first data row (the header)
        try:
            raw = next(self._reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self.fail(exc, 1) from None
        if part is not None:  # read only bytes [start, end) of the file, whose first line is part.line
            self._stream.close()
            binary = export.open_binary(name)
            binary.seek(part.start)
            self._stream = io.TextIOWrapper(_Limited(binary, part.end - part.start), encoding="utf-8", newline="")
            self._reader = csv.reader(self._stream)
            self.first_line = part.line - 1
        self.header_found = raw is not None
        self.names: list[str] = []
        self.columns: dict[str, int] = {}
        self.missing: list[str] = []
        self._resolve(raw or [], spec)
        self.width = len(raw or [])
        self.named_width = max((i + 1 for i, h in enumerate(self.names) if h), default=0)
        self.rows_read = 0
        self._short = self._first_short = self._ragged = 0
        self.report = report

    def _resolve(self, raw: list[str], spec: Columns) -> None:
        wanted = {c.lower(): c for c in (*spec.required, *spec.expected, *spec.optional, *spec.one_of)}
        names: list[str] = []
        unknown: dict[str, int] = {}
        empty: list[int] = []
        for i, cell in enumerate(raw):
            h = cell.replace("\ufeff", "").strip()
            low = h.lower()
            if not h:
                empty.append(i)
                names.append("")
                continue
            name = wanted.get(low) or spec.aliases.get(low)
            if name is None and low in KNOWN_TYPOS and KNOWN_TYPOS[low].lower() in wanted:
                name = KNOWN_TYPOS[low]
                self._warn(1, h, "header-typo", f"Column '{h}' is read as '{name}'. Correct the header.")
            if name is None:
                unknown[h] = i
                names.append(h)  # extra columns (metadata.*, ext_*) are kept under their own name
                continue
            if name in self.columns:
                self._warn(1, h, "duplicate-column", f"Column '{h}' appears twice; the first one is used.")
                names.append(h)
                continue
            self.columns[name] = i
            names.append(name)
        for col in spec.required + spec.expected:
            if col in self.columns:
                continue
            close = difflib.get_close_matches(col.lower(), [u.lower() for u in unknown], n=1, cutoff=0.85)
            if close:
                orig = next(u for u in unknown if u.lower() == close[0])
                i = unknown.pop(orig)
                self.columns[col] = i
                names[i] = col
                self._warn(1, orig, "header-typo", f"Column '{orig}' is read as '{col}'. Correct the header.")
        if empty and any(names[i] for i in range(empty[0], len(names))):
            where = ", ".join(str(i + 1) for i in empty)
            self._warn(1, "", "empty-column-name", f"Header columns {where} have no name; their values are ignored.")
        self.missing = [c for c in spec.required if c not in self.columns]
        if spec.one_of and not any(c in self.columns for c in spec.one_of):
            self.missing.append(" or ".join(spec.one_of))
        for col in spec.expected:
            if col not in self.columns and self.header_found:
                self._warn(1, col, "missing-column", f"{self.file} has no '{col}' column; it is read as blank.")
        self.names = names

    def _warn(self, line: int, column: str, code: str, message: str) -> None:
        self.report.add(self.file, line, column, code, message, "warning")

    @property
    def usable(self) -> bool:
        return self.header_found and not self.missing

    @property
    def reader(self) -> Any:  # csv's reader object: iterate it, read .line_num
        """The underlying csv reader, for a hot loop that does its own line counting (see rows())."""
        return self._reader

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def fix_row(self, row: list[str], line: int, end: int) -> list[str] | None:
        """A row whose length differs from the header's, padded or trimmed; None if blank or ragged."""
        width, named = self.width, self.named_width
        lr = len(row)
        if not row or (lr == 1 and not row[0].strip()):
            return None  # blank line: not a row
        if lr < named:
            self._short += 1
            self._first_short = self._first_short or line
        if lr < width:
            return row + [""] * (width - lr)
        if any(c.strip() for c in row[named:]):
            self._ragged += 1
            if self.usable:
                hint = (
                    f" It spans lines {line}-{end}: a quote is probably not closed."
                    if end > line
                    else " A value probably contains an unquoted comma."
                )
                self.report.add(
                    self.file,
                    line,
                    "",
                    "ragged-row",
                    f"Row has {lr} fields but the header names {named}; not used.{hint} "
                    "Quote values that contain commas.",
                )
            return None
        return row[:width]

    def fail(self, exc: Exception, line: int) -> ExportError:
        """The ExportError to raise when the file stops being readable text or CSV at `line`."""
        self._stream.close()
        if isinstance(exc, UnicodeDecodeError):
            line = _first_undecodable_line(self.export, self.file) or line
        return _unreadable(self.file, line, exc)

    def finish(self, rows: int) -> None:
        """Count the rows read and report what was found about the file as a whole."""
        self._stream.close()
        n = rows + self._ragged
        self.rows_read += n
        self.report.count_read(self.file, n)
        file = self.file
        if self._short:
            self._warn(
                self._first_short,
                "",
                "short-row",
                f"{self._short} rows have fewer fields than the header (first at line {self._first_short}); "
                "the missing trailing fields are read as blank.",
            )
        if not self.header_found:
            self._warn(0, "", "empty-file", f"{file} is empty (not even a header row).")
        elif not self.usable:
            cols = ", ".join(f"'{c}'" for c in self.missing)
            self.report.add(
                file,
                1,
                self.missing[0].split(" or ")[0],
                "missing-column",
                f"{file} has no {cols} column, so its {n} rows cannot be used. "
                f"Add the column to the export (header found: {', '.join(h for h in self.names if h)}).",
            )

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line where the row starts, fields padded to the header); unusable rows are reported."""
        reader = self._reader
        regular = self.width == self.named_width
        width, usable, fix = self.width, self.usable, self.fix_row
        n = 0
        prev = reader.line_num
        try:
            for row in reader:
                line = prev + 1
                prev = reader.line_num
                if len(row) != width or not regular:
                    fixed = fix(row, line, prev)
                    if fixed is None:
                        continue
                    row = fixed
                n += 1
                if usable:
                    yield line, row
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self.fail(exc, prev + 1) from None
        finally:
            if not self._stream.closed:
                self.finish(n)

    def dict_rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(line, row as a dict by column name); our columns under their canonical names, extras as found."""
        names = self.names
        for line, row in self.rows():
            yield line, {k: v for k, v in zip(names, row, strict=False) if k}

    def close(self) -> None:
        self._stream.close()


def _first_undecodable_line(export: Export, name: str) -> int:
    """The line holding the first byte that is not UTF-8 (text is decoded in blocks, so look again)."""
    with export.open_binary(name) as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _unreadable(file: str, line: int, exc: Exception) -> ExportError:
    if isinstance(exc, UnicodeDecodeError):
        return ExportError(
            f"{file} is not UTF-8 text (first bad byte near line {line}). "
            "Save it as 'CSV UTF-8' in the SIS or spreadsheet and run again."
        )
    return ExportError(f"{file} cannot be read as CSV near line {line} ({exc}). Check the file is plain CSV text.")


def open_csv(
    export: Export, name: str, report: RowReport, spec: Columns, part: FilePart | None = None
) -> CsvTable | None:
    """The file as a CsvTable (or only the byte range `part` of it), or None when the export has no such file."""
    if not export.has(name):
        return None
    return CsvTable(export, name, report, spec, part)


def read_csv(export: Export, name: str, report: RowReport, spec: Columns) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row dict) for every usable row of `name`; nothing when the file is absent."""
    table = open_csv(export, name, report, spec)
    if table is None:
        return
    yield from table.dict_rows()


def parse_date(text: str) -> date | None:
    """An ISO 8601 calendar date `YYYY-MM-DD` (a time part after `T` is dropped); None otherwise."""
    t = text.strip()
    if len(t) > 10 and t[10] in "T ":
        t = t[:10]
    if len(t) != 10 or t[4] != "-" or t[7] != "-":
        return None
    try:
        return date.fromisoformat(t)
    except ValueError:
        return None


def bad_date(value: str, column: str, show_value: bool = True) -> str:
    """What is wrong with a date that is not ISO 8601, and what to do (the value left out for birth dates)."""
    shown = f"'{value.strip()}' " if show_value else ""
    hint = ""
    if show_value and "/" in value:
        hint = " Dates with slashes are ambiguous (1/05/2023 is 5 January in the US, 1 May elsewhere)."
    return f"{column} {shown}is not an ISO 8601 date (YYYY-MM-DD).{hint} Export dates as YYYY-MM-DD."
