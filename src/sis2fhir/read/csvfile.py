"""The one CSV reader behind every export file: line numbers, broken quotes, damaged and ragged rows, row counts."""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from sis2fhir.read.cutting import FilePart, Limited
from sis2fhir.read.export import Export, ExportError
from sis2fhir.read.header import Columns, resolve_header
from sis2fhir.read.lines import Damage, TextLines
from sis2fhir.read.quotes import FIELD_LIMIT, broken_quote_field, fields_of, quoted_field_start
from sis2fhir.report import RowReport

MAX_ROW_LINES = 100  # a quoted value with more line breaks than this is taken for a quote that is not closed

# Told of each row rejected before its fields are read (a damaged line, a broken quote, a ragged row):
# (line, {our column: its value as far as it can be read, bad bytes as U+FFFD}). Best effort, the slow path only.
OnRejected = Callable[[int, dict[str, str]], None]


class Reread(Exception):
    """Rows `line`..`end` were read as one row that is broken quoting: report it, read on from line + 1."""

    def __init__(self, line: int, end: int, why: str) -> None:
        super().__init__(line, end, why)
        self.line, self.end, self.why = line, end, why


class CsvTable:
    """One CSV file opened with its header resolved: `columns` maps our column names to positions.

    A damaged line (not UTF-8, a NUL, overlong), a broken quote or a field over csv's limit costs only its row: it
    is reported (file, line, column) and reading goes on with the next physical line. A file that is not text at
    all is reported as `file-unreadable` (and refused, unless `stop_if_unreadable` is False: attendance, whose
    reports a gate reads). `on_rejected` is told of each row rejected before its fields are read."""

    def __init__(
        self,
        export: Export,
        name: str,
        report: RowReport,
        spec: Columns,
        part: FilePart | None = None,
        stop_if_unreadable: bool = True,
        on_rejected: OnRejected | None = None,
    ) -> None:
        self.export = export
        self._on_rejected = on_rejected
        self.file = export.actual_name(name)
        # header warnings of a second or later part go to a throwaway report: the first part gives them
        self.report = part.report_to if part is not None and part.report_to is not None else report
        self._pending: list[Damage] | None = []  # damage found before the header names the columns
        self._damaged: set[int] = set()  # lines blanked for damage (their rows are reported)
        self._broken = self._ragged = self._short = self._first_short = 0
        self._finished = False
        self.names: list[str] = []
        self.columns: dict[str, int] = {}
        self.missing: list[str] = []
        head = TextLines(export.open_binary(name), 1, self._damage if part is None else self._header_damage, True)
        self._lines = head
        reader = head.reader()
        raw: list[str] | None = None
        self.unreadable = ""
        try:
            raw = next(reader, None)
        except csv.Error as exc:
            self.unreadable = f"its header row cannot be read as CSV ({exc})"
        self.unreadable = head.not_text or self.unreadable
        if raw == ["\x00"] and reader.line_num == head.end_line == 1:
            raw = None  # the file holds no line at all: only the sentinel was read
        elif raw is not None and head.end_line and reader.line_num >= head.end_line:
            self.unreadable, raw = "its header row has a quote that is never closed", None
        self._reader, self._base = reader, 0
        if part is not None:  # read only bytes [start, end) of the file, whose first line is part.line
            head.close()
            binary = export.open_binary(name)
            binary.seek(part.start)
            self._lines = TextLines(Limited(binary, part.end - part.start), part.line, self._damage)  # type: ignore[arg-type]
            self._reader, self._base = self._lines.reader(), part.line - 1
        self.header_found = raw is not None
        self.names, self.columns, self.missing = resolve_header(raw or [], spec, self.file, self._warn, raw is not None)
        self.width = len(raw or [])
        self.named_width = max((i + 1 for i, h in enumerate(self.names) if h), default=0)
        self.rows_read = 0
        pending, self._pending = self._pending or [], None
        for d in pending:
            self._damage(d)
        header_report, self.report = self.report, report
        if self.unreadable:
            self._lines.close()
            self._reader = csv.reader(())
            header_report.add(
                self.file,
                0,
                "",
                "file-unreadable",
                f"{self.file} cannot be read: {self.unreadable}. Export it again as CSV UTF-8 "
                "(in Excel: 'CSV UTF-8 (Comma delimited)').",
            )
            if stop_if_unreadable:
                raise ExportError(f"{self.file} cannot be read: {self.unreadable}. Export it again as CSV UTF-8.")

    def _warn(self, line: int, column: str, code: str, message: str) -> None:
        self.report.add(self.file, line, column, code, message, "warning")

    def _header_damage(self, d: Damage) -> None:
        if d.line == 1:  # the rest of the head's first block is read again by the part that holds it
            self._damage(d)

    def _damage(self, d: Damage) -> None:
        """Report a line that could not be read as text (kept for when the header has named the columns)."""
        if self._pending is not None:
            self._pending.append(d)
            return
        # an overlong line: its column is the one whose value runs past csv's limit (see _column_at)
        column = self._column_at(d.text[: d.position - 1] + "x" if d.position else d.text)
        where = f"{d.what} at character {d.position}" + (f", in column '{column}'" if column else "")
        if d.code == "invalid-utf8":
            what = f"has a byte that is not UTF-8 text ({where})"
            fix = "Save the file as CSV UTF-8 (in Excel: 'CSV UTF-8 (Comma delimited)')."
        elif d.code == "nul-byte":
            what = f"holds {where}, which text never does"
            fix = "The file is damaged or was saved as UTF-16: export it again as CSV UTF-8."
        else:
            what = f"is {d.what} long, longer than any row of an export"
            fix = "Export the file again; check that it is the CSV the SIS produced."
        if d.line == 1:
            self._warn(1, column, d.code, f"The header row {what}; it is read with that character replaced. {fix}")
            return
        self._damaged.add(d.line)
        self.report.add(self.file, d.line, column, d.code, f"Line {what}; its row is not used. {fix}")
        self._rejected(d.line, d.text)

    def _rejected(self, line: int, text: str | list[str] | None) -> None:
        """Tell `on_rejected` what can be read of a rejected row: its fields, or its first line split as CSV."""
        if self._on_rejected is None or text is None or not self.columns:
            return
        fields = text if isinstance(text, list) else fields_of(text)
        self._on_rejected(line, {c: fields[i] for c, i in self.columns.items() if i < len(fields)})

    def _column_at(self, text: str) -> str:
        """The name of the column that the last field of `text` (the start of a line) is in."""
        try:
            fields = next(csv.reader([text]), [])
        except csv.Error:  # a field over the limit: the fields before it are enough
            fields = next(csv.reader([text[: FIELD_LIMIT - 1]]), [])
        return self.names[len(fields) - 1] if 0 < len(fields) <= len(self.names) else ""

    @property
    def unterminated(self) -> bool:
        """The file's last line has no line end (known once its rows are read)."""
        return self._lines.unterminated

    @property
    def usable(self) -> bool:
        return self.header_found and not self.missing

    @property
    def regular(self) -> bool:
        """Every row of the header's width can be used as it is (else each row goes through fix_row)."""
        return self.width == self.named_width and self.width > 1  # width 1: the sentinel row must reach fix_row

    @property
    def reader(self) -> Any:  # csv's reader object: iterate it, read .line_num
        """The csv reader, for a hot loop that does its own line counting (see rows()); replaced by recover()."""
        return self._reader

    @property
    def base(self) -> int:
        """The line before the reader's first line (line of a row = base + reader.line_num)."""
        return self._base

    def fix_row(self, row: list[str], line: int, end: int) -> list[str] | None:
        """A row (physical lines `line`..`end`) as wide as the header, or None when it is not a row or not usable.

        Raises Reread when the row is broken quoting: the caller calls recover() and reads on."""
        if end != line or line == self._lines.end_line:
            if end >= self._lines.end_line > 0 and line == self._lines.end_line:
                return None  # the sentinel after the last line
            return self._spanning(row, line, end)
        width, named = self.width, self.named_width
        lr = len(row)
        if not row or (lr == 1 and not row[0].strip()):
            return None  # blank line (or a damaged one, reported already): not a row
        if lr < named:
            if quoted_field_start(row) and self._broken_quote(line):
                return None
            self._short += 1
            self._first_short = self._first_short or line
        if lr < width:
            return row + [""] * (width - lr)
        if any(c.strip() for c in row[named:]):
            self._ragged += 1
            if self.usable:
                self.report.add(
                    self.file,
                    line,
                    "",
                    "ragged-row",
                    f"Row has {lr} fields but the header names {named}; not used. A value probably contains "
                    "an unquoted comma. Quote values that contain commas.",
                )
                self._rejected(line, row)
            return None
        return row[:width]

    def _broken_quote(self, line: int) -> bool:
        """Report a one-line row whose quoted value is closed and followed by more text (a stray quote: csv then
        reads the fields after it into that value, so the row comes out short)."""
        first = self._lines.lines(line, line)
        column = self._quote_column(first[0]) if first else ""
        if not column:
            return False
        self._broken += 1
        self.report.add(
            self.file,
            line,
            column,
            "unclosed-quote",
            "A quoted value starting here is closed and followed by more text, which swallows the values after "
            'it; row not used. Close the quote (a quote inside a quoted value is written "").',
        )
        self._rejected(line, first[0] if first else None)
        return True

    def _quote_column(self, text: str) -> str:
        """The column in which the first broken quoted value of a line (`text`) starts ("" when none is)."""
        i = broken_quote_field(text)
        return self.names[i] if i is not None and i < len(self.names) else ""

    def _spanning(self, row: list[str], line: int, end: int) -> list[str] | None:
        """A row over several lines: a quoted value with line breaks (RFC 4180) or a quote that is not closed."""
        lines = self._lines
        if lines.end_line and end >= lines.end_line:
            raise Reread(line, end, "is never closed: it runs to the end of the file")
        if end - line >= MAX_ROW_LINES:
            raise Reread(line, end, f"runs over {end - line + 1} lines")
        text = lines.lines(line, end)
        try:
            if text is not None:
                deque(csv.reader(text, strict=True), maxlen=0)
        except csv.Error:
            raise Reread(line, end, f"closes on line {end} but is followed by more text") from None
        if not self.named_width <= len(row) <= self.width:
            raise Reread(line, end, f"spans lines {line}-{end}, which give {len(row)} fields, not {self.width}")
        hurt = sorted(n for n in self._damaged if line <= n <= end)
        if hurt:
            if hurt[0] != line:
                self._broken += 1
                self.report.add(
                    self.file, line, "", "damaged-row", f"Row spans line {hurt[0]}, which cannot be read; not used."
                )
                self._rejected(line, row)
            return None
        return row + [""] * (self.width - len(row))

    def recover(self, line: int, end: int, why: str) -> tuple[Any, int]:
        """Report the row at `line` (broken quoting, read up to line `end`) and re-read from line + 1.

        Returns the new (reader, base)."""
        self._broken += 1
        first = self._lines.lines(line, line)
        column = (self._quote_column(first[0]) or self._column_at(first[0])) if first else ""
        if end == line and not why:
            code, message = "field-too-large", f"A value is longer than {FIELD_LIMIT} characters; row not used."
        else:
            code = "unclosed-quote"
            message = (
                f"A quoted value starting on this line {why or 'is longer than ' + str(FIELD_LIMIT) + ' characters'}"
                "; row not used, and the lines after it are read as rows. Close the quote (a quote inside a "
                'quoted value is written "").'
            )
        self.report.add(self.file, line, column, code, message)
        self._rejected(line, first[0] if first else None)
        replay: list[str] = []
        if end > line:
            spanned = self._lines.lines(line + 1, end)
            if spanned is not None:
                replay = spanned
            else:  # only a row spanning megabytes gets here
                self.report.add(
                    self.file, line + 1, "", code, f"Lines {line + 1}-{end} were read into that row; not used."
                )
        self._reader, self._base = self._lines.reader(replay), line
        return self._reader, line

    def finish(self, rows: int) -> None:
        """Count the rows read and report what was found about the file as a whole."""
        if self._finished:
            return
        self._finished = True
        self._lines.close()
        n = rows + self._ragged + self._broken + len(self._damaged)
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
        if self.unreadable:
            return
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
        width, usable, fix, regular = self.width, self.usable, self.fix_row, self.regular
        reader, base = self._reader, self._base
        n = 0
        prev = reader.line_num + base
        try:
            while True:
                try:
                    for row in reader:
                        line = prev + 1
                        prev = reader.line_num + base
                        if prev != line or len(row) != width or not regular:
                            fixed = fix(row, line, prev)
                            if fixed is None:
                                continue
                            row = fixed
                        n += 1
                        if usable:
                            yield line, row
                    break
                except Reread as broken:
                    reader, base = self.recover(broken.line, broken.end, broken.why)
                    prev = base
                except csv.Error:
                    reader, base = self.recover(prev + 1, reader.line_num + base, "")
                    prev = base
        finally:
            self.finish(n)

    def dict_rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(line, row as a dict by column name); our columns under their canonical names, extras as found."""
        names = self.names
        unnamed = "" in names  # a column the header does not name: left out
        for line, row in self.rows():
            values = dict(zip(names, row, strict=False))
            if unnamed:
                values.pop("", None)
            yield line, values

    def close(self) -> None:
        self._lines.close()


def open_csv(
    export: Export,
    name: str,
    report: RowReport,
    spec: Columns,
    part: FilePart | None = None,
    stop_if_unreadable: bool = True,
    on_rejected: OnRejected | None = None,
) -> CsvTable | None:
    """The file as a CsvTable (or only the byte range `part` of it), or None when the export has no such file."""
    if not export.has(name):
        return None
    return CsvTable(export, name, report, spec, part, stop_if_unreadable, on_rejected)


def read_csv(export: Export, name: str, report: RowReport, spec: Columns) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row dict) for every usable row of `name`; nothing when the file is absent."""
    table = open_csv(export, name, report, spec)
    if table is None:
        return
    yield from table.dict_rows()
