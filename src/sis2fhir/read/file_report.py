"""One file's entries in a RowReport: the file named once, each row's problem in one call."""

from __future__ import annotations

from sis2fhir.report import RowReport


class FileReport:
    """`report.add(file, ...)` for one file: `error` for a row not used, `warn` for one used with a caveat."""

    __slots__ = ("file", "report")

    def __init__(self, report: RowReport, file: str) -> None:
        self.report = report
        self.file = file

    def error(self, line: int, column: str, code: str, message: str) -> None:
        self.report.add(self.file, line, column, code, message)

    def warn(self, line: int, column: str, code: str, message: str) -> None:
        self.report.add(self.file, line, column, code, message, "warning")
