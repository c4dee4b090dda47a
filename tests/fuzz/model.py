"""What a fuzz variant is: how to build it, how to run the CLI on it, and what a correct run looks like."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# clean: exit 0, output identical to the clean run. row: the bad row is named in rows-report.csv (file, line,
# column), exit 3, every student except the affected ones identical. unusable / config / usage: exit 1 / 1 / 2 and
# nothing sent. nothing-to-send: a legitimate export under which nobody may receive anything (exit 0, nothing sent).
Outcome = Literal["clean", "row", "unusable", "config", "usage", "nothing-to-send"]
DOCUMENTED_EXITS = frozenset({0, 1, 2, 3, 4, 5})  # README; 70 (internal error) is documented but a failure here


@dataclass(frozen=True, slots=True)
class RowRef:
    """An entry rows-report.csv must hold: the file, the line (None: any, 0 included) and one of the columns."""

    file: str
    line: int | None = None
    columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.file}:{'*' if self.line is None else self.line}"
        return where + (f" column {'|'.join(self.columns)}" if self.columns else "")


@dataclass(frozen=True, slots=True)
class Expect:
    outcome: Outcome
    exits: frozenset[int]
    rows: tuple[RowRef, ...] = ()
    affected: frozenset[str] | None = frozenset()  # students whose resources may differ; None: anyone's
    alt_unusable: bool = False  # refusing the whole export (exit 1, nothing sent) is also correct
    # the Patient's birth date and gender (demographics.csv) may go for every student; nothing else may change
    demographics_may_go: bool = False
    why: str = ""  # the reason for this expectation, in a production integration engineer's words


@dataclass(slots=True)
class Bases:
    """The clean exports variants start from: the committed CSV example and generated Ed-Fi / exception-only ones."""

    csv: Path
    edfi: Path
    exceptions: Path

    def of(self, name: str) -> Path:
        return {"csv": self.csv, "edfi": self.edfi, "exceptions": self.exceptions}[name]


@dataclass(slots=True)
class Call:
    """One CLI run: `sis2fhir sync EXPORT --as-of AS_OF --out OUT ARGS...` unless `argv` says otherwise."""

    export: Path | str | None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    out: Path | None = None  # --out; None: no --out option
    report: Path | None = None  # where the row report is read (default OUT/rows-report.csv)
    as_of: str | None = "2026-03-31"
    argv: list[str] | None = None  # the whole command line after `sis2fhir` (overrides the above)
    prior: bool = False  # sync the clean export into the same --out and store first (a last accepted run)
    must_not_exist: list[Path] = field(default_factory=list)  # e.g. where a zip member named ../x would land

    def command(self) -> list[str]:
        if self.argv is not None:
            return list(self.argv)
        cmd = ["sync", *([str(self.export)] if self.export is not None else [])]
        if self.as_of is not None:
            cmd += ["--as-of", self.as_of]
        if self.out is not None:
            cmd += ["--out", str(self.out)]
        return cmd + self.args


Build = Callable[[Path, Bases], Call]


@dataclass(slots=True)
class Variant:
    id: str
    kind: str  # file-damage | row-defect | zip | path | edfi | config | option | gate
    what: str
    build: Build
    expect: Expect
    root_skip: str = ""  # reason to skip when running as root (root reads and writes everything)
    heavy: bool = False  # takes long without the fix (a zip bomb): left out of the fast sample
