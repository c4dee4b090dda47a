"""`sis2fhir validate PATH...`: validates FHIR JSON, NDJSON and Bundle files (or folders of them); reports."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from sis2fhir.validate.engine import Issue, Validator, default_validator

SUFFIXES = (".json", ".ndjson", ".jsonl")


@dataclass(frozen=True, slots=True)
class ResourceReport:
    file: str
    line: int  # 1-based line in an NDJSON file; 0 for a .json file
    resource_type: str
    resource_id: str
    issues: tuple[Issue, ...]

    @property
    def errors(self) -> int:
        return sum(1 for i in self.issues if i.severity == "error")


@dataclass(frozen=True, slots=True)
class Unreadable:
    file: str
    line: int
    message: str


@dataclass(slots=True)
class FilesReport:
    resources: list[ResourceReport] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.resources)

    @property
    def invalid(self) -> list[ResourceReport]:
        return [r for r in self.resources if r.errors]

    def exit_code(self) -> int:
        """0: no errors; 1: errors found; 2: some input could not be read at all."""
        if self.unreadable:
            return 2
        return 1 if self.errors else 0


def _files(paths: list[Path], report: FilesReport) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            yield path
        else:
            report.unreadable.append(Unreadable(str(path), 0, "no such file or folder"))


def _documents(path: Path, report: FilesReport) -> Iterator[tuple[int, Any]]:
    """(line, parsed JSON) per resource: one per NDJSON line (streamed), or the whole file."""
    ndjson = path.suffix.lower() in (".ndjson", ".jsonl")
    try:
        with path.open("rb") as stream:
            if not ndjson:
                data = stream.read()
            else:
                for number, raw in enumerate(stream, start=1):
                    if not raw.strip():
                        continue
                    try:
                        yield number, orjson.loads(raw)
                    except orjson.JSONDecodeError as error:
                        report.unreadable.append(Unreadable(str(path), number, f"not JSON: {error}"))
                return
    except OSError as error:
        report.unreadable.append(Unreadable(str(path), 0, f"cannot read: {error.strerror}"))
        return
    try:
        yield 0, orjson.loads(data)
    except orjson.JSONDecodeError as error:
        report.unreadable.append(Unreadable(str(path), 0, f"not JSON: {error}"))


def validate_files(paths: list[Path], validator: Validator | None = None) -> FilesReport:
    """Validates every resource in the given files and folders (recursively). A Bundle is one resource whose
    entries are validated in turn; its issues name them (Bundle.entry[3].resource...)."""
    validator = validator or default_validator()
    report = FilesReport()
    for path in _files(paths, report):
        for line, document in _documents(path, report):
            issues = validator.validate(document)
            resource_type = str(document.get("resourceType", "")) if isinstance(document, dict) else ""
            resource_id = str(document.get("id", "")) if isinstance(document, dict) else ""
            report.resources.append(ResourceReport(str(path), line, resource_type, resource_id, tuple(issues)))
    return report


def print_report(report: FilesReport, out: TextIO = sys.stdout, warnings: bool = True) -> None:
    """A human summary: one line per issue (file:line resource expression rule message), then totals."""
    for bad in report.unreadable:
        where = f"{bad.file}:{bad.line}" if bad.line else bad.file
        print(f"{where}: unreadable: {bad.message}", file=out)
    for resource in report.resources:
        where = f"{resource.file}:{resource.line}" if resource.line else resource.file
        name = f"{resource.resource_type}/{resource.resource_id}" if resource.resource_id else resource.resource_type
        for issue in resource.issues:
            if issue.severity == "warning" and not warnings:
                continue
            print(
                f"{where}: {name}: {issue.severity} [{issue.rule}] {issue.expression}: {issue.message}",
                file=out,
            )
    by_rule = Counter(i.rule for r in report.resources for i in r.issues if i.severity == "error")
    total = len(report.resources)
    print(
        f"{total} resource(s) checked: {total - len(report.invalid)} valid, {len(report.invalid)} invalid "
        f"({report.errors} error(s)); {len(report.unreadable)} unreadable input(s)",
        file=out,
    )
    if by_rule:
        print("errors by rule: " + ", ".join(f"{rule} {n}" for rule, n in by_rule.most_common()), file=out)


def run_validate_command(paths: list[Path], out: TextIO = sys.stdout, validator: Validator | None = None) -> int:
    """What `sis2fhir validate PATH...` does: validate, print the summary, return the exit code (0/1/2)."""
    report = validate_files(paths, validator)
    print_report(report, out)
    return report.exit_code()
