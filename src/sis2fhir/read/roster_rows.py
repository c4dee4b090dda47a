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
    """One roster file's rows after OneRoster bulk/delta rules (status, dateLastModified, duplicates)."""

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
        out = self.out
        delta = self.mode == "delta"
        kept: dict[str, tuple[str, int, Row | None]] = {}  # key -> (stamp, line, row or None when deleted)
        unkeyed: list[tuple[int, Row]] = []
        status_in_bulk: Counter[str] = Counter()
        first_line: dict[str, int] = {}
        for line, row in self.table.dict_rows():
            status = row.get("status", "").strip().lower()
            stamp = row.get("dateLastModified", "").strip()
            if stamp and parse_date(stamp) is None:
                out.warn(
                    line,
                    "dateLastModified",
                    "bad-date",
                    bad_date(stamp, "dateLastModified") + " The row is used; in a delta it counts as oldest.",
                )
                stamp = ""
            deleted = False
            if delta:
                if status == "tobedeleted":
                    deleted = True
                elif status != "active":
                    out.error(
                        line,
                        "status",
                        "bad-status",
                        f"status '{status}' in a delta file must be active or tobedeleted; not used.",
                    )
                    continue
            elif status:
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
            if not key:
                unkeyed.append((line, row))
                continue
            prior = kept.get(key)
            if prior is not None:
                if not delta:
                    out.error(
                        line,
                        self.key,
                        "duplicate-id",
                        f"{self.key} '{key}' already appears at line {prior[1]}; this row is not used.",
                    )
                    continue
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
            kept[key] = (stamp, line, None if deleted else row)
        for status, count in status_in_bulk.items():
            out.warn(
                first_line[status],
                "status",
                "status-in-bulk",
                f"{count} rows of this bulk file carry status '{status}' (first at line "
                f"{first_line[status]}); bulk rows should leave status blank. They are used.",
            )
        rows = [(line, row) for _, line, row in kept.values() if row is not None] + unkeyed
        rows.sort(key=lambda lr: lr[0])
        yield from rows
