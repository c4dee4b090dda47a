"""The row report: every input row that could not be used (or was used with a caveat), with file, line, column.

Readers, the measure step and the validator all write here; `sis2fhir sync` saves it as
`rows-report.csv` (machine-readable) and prints a short summary by code.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class RowIssue:
    file: str  # path inside the export, e.g. "users.csv"
    line: int  # 1-based physical line where the row starts (0: the file as a whole)
    column: str  # column name ("" when the issue is about the whole row or file)
    code: str  # stable, machine-readable reason, e.g. "unknown-student"
    message: str  # what is wrong and what to do; never names or birth dates (no PHI)
    severity: Severity = "error"  # error: the row was not used; warning: used, with a caveat


class RowReport:
    """Collects issues; keeps counts; writes CSV (`write_csv`). Memory grows with issues, not with rows."""

    def __init__(self) -> None:
        self.issues: list[RowIssue] = []
        self.rows_read: Counter[str] = Counter()  # file -> data rows read
        self._rejected: set[tuple[str, int]] = set()  # (file, line) of rows not used

    def add(
        self,
        file: str,
        line: int,
        column: str,
        code: str,
        message: str,
        severity: Severity = "error",
    ) -> None:
        self.issues.append(RowIssue(file, line, column, code, message, severity))
        if severity == "error" and line > 0:
            self._rejected.add((file, line))

    def extend(self, other: RowReport) -> None:
        """Take over another report's issues and counts (a part of a file read in another process)."""
        self.issues.extend(other.issues)
        self.rows_read.update(other.rows_read)
        self._rejected.update(other._rejected)

    def count_read(self, file: str, n: int = 1) -> None:
        self.rows_read[file] += n

    def rows_rejected(self) -> Counter[str]:
        """file -> number of rows not used (a row with several errors counts once)."""
        return Counter(f for f, _ in self._rejected)

    def by_code(self) -> Counter[str]:
        return Counter(i.code for i in self.issues)

    @property
    def errors(self) -> int:
        return sum(1 for i in self.issues if i.severity == "error")

    def write_csv(self, path: Path) -> None:
        """The report as CSV (file, line, column, code, severity, message): opens in a spreadsheet."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as out:
            w = csv.writer(out)
            w.writerow(["file", "line", "column", "code", "severity", "message"])
            for i in self.issues:
                w.writerow([i.file, i.line, i.column, i.code, i.severity, i.message])
