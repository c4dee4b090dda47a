"""One OneRoster file's rows after the bulk/delta rules: status, dateLastModified, duplicate ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from sis2fhir.read.csvfile import Columns, open_csv
from sis2fhir.read.dates import bad_date, parse_date
from sis2fhir.read.export import Export
from sis2fhir.read.file_report import FileReport
from sis2fhir.report import RowReport

LIFECYCLE = ("status", "dateLastModified")

Row = dict[str, str]


class RosterRows:
    """One roster file's rows after OneRoster bulk/delta rules (status, dateLastModified, duplicates).

    A bulk file's rows are handed on as they are read (the first row of an id is the one used), so that reading
    users.csv or enrollments.csv does not hold every row as a dict (about 1 kB each: 100 MB at 100k students,
    measured); what this class and the CSV reader report about the file is put in the report ahead of what the
    consumer reports about its rows, as when the rows were held. A delta file (small, and a later row replaces an
    earlier one) is held."""

    def __init__(self, export: Export, name: str, report: RowReport, spec: Columns, key: str = "sourcedId") -> None:
        self.name = name
        self.report = report
        self.mode = export.manifest.mode(name)
        self.table = open_csv(export, name, report, spec)
        self.file = self.table.file if self.table else name
        self.key = key
        self.out = FileReport(report, self.file)

    def __iter__(self) -> Iterator[tuple[int, Row]]:
        if self.table is None:
            return
        if self.mode == "delta":
            yield from self._delta()
            return
        # the file's own issues go to a report of their own, put ahead of the consumer's when the file is read
        own, start = RowReport(), len(self.report.issues)
        table_report, self.table.report = self.table.report, own
        try:
            yield from self._streamed(FileReport(own, self.file))
        finally:
            self.table.report = table_report
            n = len(own.issues)
            self.report.extend(own)
            if n:
                issues = self.report.issues
                moved = issues[-n:]
                del issues[-n:]
                issues[start:start] = moved

    def _streamed(self, out: FileReport) -> Iterator[tuple[int, Row]]:
        """A bulk file's rows in file order, each id's first row (a later one is reported and not used)."""
        assert self.table is not None
        first: dict[str, int] = {}  # id -> line of its row used
        status_in_bulk: Counter[str] = Counter()
        first_line: dict[str, int] = {}
        for line, row in self.table.dict_rows():
            status = row.get("status", "").strip().lower()
            _stamp(row, line, out)
            if status:
                if status == "tobedeleted":
                    out.error(
                        line,
                        "status",
                        "deleted-in-bulk",
                        "Row is marked tobedeleted in a bulk file (a bulk file holds only current "
                        "records); not used. Leave status blank in bulk files.",
                    )
                    continue
                status_in_bulk[status] += 1
                first_line.setdefault(status, line)
            key = row.get(self.key, "").strip()
            if key:
                prior = first.get(key)
                if prior is not None:
                    out.error(
                        line,
                        self.key,
                        "duplicate-id",
                        f"{self.key} '{key}' already appears at line {prior}; this row is not used.",
                    )
                    continue
                first[key] = line
            yield line, row
        _status_in_bulk(out, status_in_bulk, first_line)

    def _delta(self) -> Iterator[tuple[int, Row]]:
        """A delta file's rows by line: the newest row of each id (dateLastModified), none of a deleted id."""
        assert self.table is not None
        out = self.out
        kept: dict[str, tuple[str, int, Row | None]] = {}  # key -> (stamp, line, row or None when deleted)
        unkeyed: list[tuple[int, Row]] = []
        for line, row in self.table.dict_rows():
            status = row.get("status", "").strip().lower()
            stamp = _stamp(row, line, out)
            if status not in ("active", "tobedeleted"):
                out.error(
                    line,
                    "status",
                    "bad-status",
                    f"status '{status}' in a delta file must be active or tobedeleted; not used.",
                )
                continue
            key = row.get(self.key, "").strip()
            if not key:
                unkeyed.append((line, row))
                continue
            prior = kept.get(key)
            if prior is not None:
                if stamp < prior[0]:
                    out.warn(
                        line,
                        self.key,
                        "superseded",
                        f"{self.key} '{key}' has a newer row at line {prior[1]}; this one is not used.",
                    )
                    continue
                out.warn(
                    prior[1],
                    self.key,
                    "superseded",
                    f"{self.key} '{key}' has a newer row at line {line}; this one is not used.",
                )
            kept[key] = (stamp, line, None if status == "tobedeleted" else row)
        rows = [(line, row) for _, line, row in kept.values() if row is not None] + unkeyed
        rows.sort(key=lambda lr: lr[0])
        yield from rows


def _stamp(row: Row, line: int, out: FileReport) -> str:
    """The row's dateLastModified; "" (reported) when it is not a date: in a delta it then counts as oldest."""
    stamp = row.get("dateLastModified", "").strip()
    if stamp and parse_date(stamp) is None:
        out.warn(
            line,
            "dateLastModified",
            "bad-date",
            bad_date(stamp, "dateLastModified") + " The row is used; in a delta it counts as oldest.",
        )
        return ""
    return stamp


def _status_in_bulk(out: FileReport, status_in_bulk: Counter[str], first_line: dict[str, int]) -> None:
    for status, count in status_in_bulk.items():
        out.warn(
            first_line[status],
            "status",
            "status-in-bulk",
            f"{count} rows of this bulk file carry status '{status}' (first at line "
            f"{first_line[status]}); bulk rows should leave status blank. They are used.",
        )
