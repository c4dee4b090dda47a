"""Run the real CLI on each variant (a subprocess, a fresh folder and store each) and check what a user would check.

    python -m tests.fuzz.runner [--all] [--jobs 2] [--results fuzz-results.txt] [-k SUBSTRING]

Checks, for every variant: no traceback anywhere in stdout or stderr; an exit code the README documents (0-5; 70, an
internal error, counts as a failure); the exit code the variant expects; the bad row in rows-report.csv with its
file, line and column; every student outside the affected ones with exactly the clean run's resources (NDJSON grouped
per student); and for unusable input, usage and configuration errors, nothing sent (no Observation in any NDJSON
file, nothing delivered in the store's outbox, no disclosure logged).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.bases import generated
from tests.fuzz.district import District
from tests.fuzz.model import DOCUMENTED_EXITS, Bases, Call, Variant

CLI = Path(sys.executable).with_name("sis2fhir")
TIMEOUT = 60  # seconds per CLI run; the clean example takes about 1.5 s
Resources = dict[str, list[str]]  # student sourcedId -> sorted "recipient resource-json" lines


@dataclass(slots=True)
class Failure:
    # traceback | timeout | undocumented-exit | exit-code | missing-row-report-entry | other-students-changed |
    # something-sent | prior-run | fuzz-suite-error
    type: str
    detail: str


@dataclass(slots=True)
class Result:
    variant: Variant
    exit: int | None = None
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    skipped: str = ""
    message: str = ""  # the first error line the CLI printed

    def explain(self) -> str:
        v = self.variant
        lines = [f"{v.id} ({v.kind}): {v.what}", f"  expected: {v.expect.outcome}, exit {sorted(v.expect.exits)}"]
        lines += [f"  why: {v.expect.why}"] if v.expect.why else []
        lines += [f"  got exit {self.exit} in {self.seconds:.1f} s: {self.message}"]
        lines += [f"  FAIL {f.type}: {f.detail}" for f in self.failures]
        return "\n".join(lines)


def _env(extra: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIS2FHIR_") and k not in ("FUZZ", "FUZZ_RESULTS")}
    env.update(HOME=str(home), LANG="C.UTF-8", COLUMNS="160", NO_COLOR="1")
    env.update(extra)
    return env


def run_cli(call: Call, cwd: Path, argv: list[str] | None = None) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, stdout + stderr, seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI), *(argv or call.command())],
        cwd=cwd,
        env=_env(call.env, cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    return code, out.decode("utf-8", "replace"), time.perf_counter() - t


# ---------------------------------------------------------------- reading what a run left


def resources(out: Path | None, d: District) -> Resources:
    """Every resource in OUT/<recipient>/*.ndjson, grouped by the student it is about."""
    found: dict[str, list[str]] = {}
    if out is None or not out.is_dir():
        return found
    for path in sorted(out.glob("*/*.ndjson")):
        if path.parent.name == "quarantine":
            continue
        for raw in path.read_bytes().splitlines():
            try:
                res = json.loads(raw)
            except ValueError:
                found.setdefault("?unparseable", []).append(f"{path.parent.name} {raw[:80]!r}")
                continue
            if res.get("resourceType") == "Organization":
                continue  # the district, a school, the recipient: about no student (checked in tests/end_to_end)
            line = f"{path.parent.name} {json.dumps(res, sort_keys=True)}"
            found.setdefault(_student_of(res, d), []).append(line)
    return {k: sorted(v) for k, v in found.items()}


def _without_demographics(found: Resources) -> Resources:
    """The same resources with each Patient's birth date, gender and narrative (which names them) left out."""
    out: dict[str, list[str]] = {}
    for student, lines in found.items():
        for line in lines:
            recipient, _, body = line.partition(" ")
            res = json.loads(body)
            if res.get("resourceType") == "Patient":
                for key in ("birthDate", "gender", "text"):
                    res.pop(key, None)
                line = f"{recipient} {json.dumps(res, sort_keys=True)}"
            out.setdefault(student, []).append(line)
    return {k: sorted(v) for k, v in out.items()}


def _student_of(res: dict, d: District) -> str:
    ident = ((res.get("identifier") or [{}])[0] or {}).get("value", "")
    if res.get("resourceType") == "Consent" and ident in d.consent_students:
        return d.consent_students[ident]
    for sid in (ident.rsplit("-", 2)[-2:],):
        candidate = "-".join(sid)
        if candidate in d.students:
            return candidate
    if res.get("resourceType") == "Patient":  # the student: by the state id, else the district's id
        for i in res.get("identifier") or []:
            if i.get("value") in d.state_ids:
                return d.state_ids[i["value"]]
            if i.get("value") in d.students:
                return i["value"]
    who = res.get("subject") or res.get("patient") or {}
    state = (who.get("identifier") or {}).get("value", "")
    return d.state_ids.get(state, f"?{res.get('resourceType')}:{state or ident}")


@dataclass(slots=True)
class Sent:
    observations: int = 0
    delivered: int = 0
    disclosures: int = 0
    files: dict[str, bytes] = field(default_factory=dict)


def sent(out: Path | None, work: Path) -> Sent:
    s = Sent()
    if out is not None and out.is_dir():
        for path in sorted(out.glob("*/*.ndjson")):
            data = path.read_bytes()
            s.files[str(path.relative_to(out))] = data
            s.observations += data.count(b'"resourceType":"Observation"') + data.count(b'"resourceType": "Observation"')
    stores = [work / "sis2fhir-state.sqlite", *([out / "state.sqlite"] if out is not None else [])]
    for store in stores:
        if not store.is_file():
            continue
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            for table, where, attr in (
                ("outbox", "status = 'delivered'", "delivered"),
                ("disclosures", "1", "disclosures"),
            ):
                try:
                    n = db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
                except sqlite3.Error:
                    n = 0
                setattr(s, attr, getattr(s, attr) + n)
    return s


def report_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return list(csv.DictReader(f))


def last_traceback_line(text: str) -> str:
    tail = text[text.rfind("Traceback") :].splitlines()[1:]
    found = next((ln.strip() for ln in tail if ln and not ln.startswith(" ")), "")
    if not found:  # an exception group: its lines are drawn with "|" in front
        found = next((ln.strip(" |") for ln in tail if re.match(r"[\s|]*[A-Za-z_.]+(Error|Exception|Group)\b", ln)), "")
    return found or "Traceback (no exception line)"


def first_error(text: str) -> str:
    for ln in text.splitlines():
        if "error" in ln.lower() or "Error" in ln:
            return ln.strip()[:200]
    return (text.strip().splitlines() or [""])[-1][:200]


# ---------------------------------------------------------------- one variant


class Baseline:
    """The clean run: every student's resources, to compare each variant with."""

    def __init__(self, bases: Bases, d: District, root: Path) -> None:
        work = root / "baseline"
        work.mkdir(parents=True)
        call = Call(bases.csv, out=work / "out")
        code, text, _ = run_cli(call, work)
        if code != 0 or "Traceback" in text:
            raise RuntimeError(f"the clean example does not sync cleanly (exit {code}):\n{text[-2000:]}")
        self.resources = resources(work / "out", d)
        if len(self.resources) < 100:
            raise RuntimeError("the clean run wrote resources for fewer than 100 students; the NDJSON layout changed?")


def run_variant(v: Variant, bases: Bases, d: District, baseline: Baseline, root: Path, keep: bool = False) -> Result:
    r = Result(v)
    if v.root_skip and os.geteuid() == 0:
        r.skipped = v.root_skip
        return r
    work = Path(tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9]+", "-", v.id)[:60] + "-", dir=root))
    try:
        call = v.build(work, bases)
        before = Sent()
        if call.prior:
            code, text, _ = run_cli(Call(bases.csv, out=call.out), work)
            if code != 0:
                r.failures.append(Failure("prior-run", f"the clean run before the variant gave exit {code}"))
            before = sent(call.out, work)
        code, text, r.seconds = run_cli(call, work)
        r.exit, r.message = code, first_error(text)
        r.failures += check(v, call, code, text, work, d, baseline, before)
    except Exception as e:  # a bug in the generator is a failure of the suite, reported as such
        r.failures.append(Failure("fuzz-suite-error", f"{type(e).__name__}: {e}"))
    finally:
        if not keep:
            for p in work.rglob("*"):
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
            shutil.rmtree(work, ignore_errors=True)
    return r


def check(
    v: Variant, call: Call, code: int | None, text: str, work: Path, d: District, baseline: Baseline, before: Sent
) -> list[Failure]:
    e = v.expect
    fails: list[Failure] = []
    if "Traceback" in text:
        fails.append(Failure("traceback", last_traceback_line(text)))
    if code is None:
        return [*fails, Failure("timeout", f"no exit after {TIMEOUT} s")]
    if code not in DOCUMENTED_EXITS:
        fails.append(Failure("undocumented-exit", f"exit {code} ({first_error(text)})"))
    now = sent(call.out, work)
    for p in call.must_not_exist:
        if p.exists():
            fails.append(Failure("something-sent", f"{p} was written outside the run's folders"))
    refused = code == 1 and e.alt_unusable
    if code not in e.exits and not refused:
        fails.append(
            Failure("exit-code", f"exit {code}, expected {'/'.join(map(str, sorted(e.exits)))}: {first_error(text)}")
        )
    if refused or e.outcome in ("unusable", "config", "usage", "nothing-to-send"):
        leaked = _leaks(now, before, call.prior)
        if leaked:
            fails.append(Failure("something-sent", leaked))
        return fails
    rows = report_rows(call.report or (call.out or work) / "rows-report.csv")
    for ref in e.rows:
        if not any(_matches(ref, row) for row in rows):
            near = [f"{x.get('code')}@{x.get('column')}" for x in rows if _matches(type(ref)(ref.file, ref.line), x)]
            found = (
                f"at that line: {', '.join(near)}"
                if near
                else f"{sum(_same_file(ref.file, x) for x in rows)} entries for the file"
            )
            fails.append(Failure("missing-row-report-entry", f"{ref} not in rows-report.csv ({found})"))
    if e.affected is not None and code in (0, 3, 4):
        got, base = resources(call.out, d), baseline.resources
        if e.demographics_may_go:
            got, base = _without_demographics(got), _without_demographics(base)
        changed = sorted(s for s in set(got) | set(base) if s not in e.affected and got.get(s) != base.get(s))
        if changed:
            missing = sum(1 for s in changed if s not in got)
            fails.append(
                Failure(
                    "other-students-changed",
                    f"{len(changed)} other students differ from the clean run ({missing} with nothing written), "
                    f"e.g. {', '.join(changed[:4])}",
                )
            )
    return fails


def _leaks(now: Sent, before: Sent, prior: bool) -> str:
    if prior:
        changed = sorted(k for k in set(now.files) | set(before.files) if now.files.get(k) != before.files.get(k))
        grew = (now.delivered - before.delivered, now.disclosures - before.disclosures)
        if changed or any(grew):
            return (
                f"after the accepted run: {len(changed)} NDJSON files changed, +{grew[0]} delivered, "
                f"+{grew[1]} disclosures"
            )
        return ""
    if now.observations or now.delivered or now.disclosures:
        return (
            f"{now.observations} Observations in NDJSON, {now.delivered} outbox items delivered, "
            f"{now.disclosures} disclosures logged"
        )
    return ""


def _same_file(name: str, row: dict[str, str]) -> bool:
    return Path(row.get("file") or "").name.lower() == name.lower()


def _matches(ref, row: dict[str, str]) -> bool:  # type: ignore[no-untyped-def]
    if not _same_file(ref.file, row):
        return False
    if ref.line is not None and (row.get("line") or "").strip() != str(ref.line):
        return False
    return not ref.columns or (row.get("column") or "") in ref.columns


# ---------------------------------------------------------------- the whole set


def run_all(
    variants: list[Variant] | tuple[Variant, ...], jobs: int = 2, keep: bool = False
) -> tuple[list[Result], float]:
    """Every variant, `jobs` at a time (threads: the work is in the CLI subprocesses). (results, seconds)."""
    t = time.perf_counter()
    bases, d = generated(), District()
    root = Path(tempfile.mkdtemp(prefix="sis2fhir-fuzz-"))
    try:
        baseline = Baseline(bases, d, root)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(lambda v: run_variant(v, bases, d, baseline, root, keep), variants))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return results, time.perf_counter() - t


def summary(results: list[Result], seconds: float) -> str:
    failed = [r for r in results if r.failures]
    skipped = [r for r in results if r.skipped]
    kinds = Counter(r.variant.kind for r in results)
    failed_kinds = Counter(r.variant.kind for r in failed)
    types = Counter(f.type for r in failed for f in r.failures)
    causes = Counter(f"{f.type}: {_cause(f)}" for r in failed for f in r.failures)
    out = [
        f"sis2fhir fuzz: {len(results)} variants, {len(failed)} failed, {len(skipped)} skipped, {seconds:.0f} s",
        "",
        "variants by kind (failed / total):",
        *(f"  {k:<12} {failed_kinds[k]:>4} / {n}" for k, n in sorted(kinds.items())),
        "",
        "failures by type (a variant can fail in several ways):",
        *(f"  {t:<26} {n}" for t, n in types.most_common()),
        "",
        "most common causes:",
        *(f"  {n:>4}  {c}" for c, n in causes.most_common(15)),
        "",
        "slowest runs:",
        *(f"  {r.seconds:6.1f} s  {r.variant.id}" for r in sorted(results, key=lambda r: -r.seconds)[:8]),
        "",
        "skipped:",
        *(f"  {r.variant.id}: {r.skipped}" for r in skipped),
        "",
        "failed variants (id, kind, expectation, what happened):",
    ]
    for r in failed:
        out += [r.explain(), ""]
    return "\n".join(out) + "\n"


def _cause(f: Failure) -> str:
    """The failure's detail without the numbers and names that differ between variants, to count causes."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", f.detail)
    text = re.sub(r"stu-\d+|/tmp/\S+|\d{2,}", "N", text)
    return text[:150]


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz.catalogue import all_variants, sample

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="every variant (default: the fixed sample make test runs)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--results", type=Path, help="write the summary and the failure list here")
    p.add_argument("-k", default="", help="only variants whose id contains this")
    p.add_argument("--keep", action="store_true", help="keep each variant's folder (printed) for a look")
    a = p.parse_args(argv)
    variants = all_variants() if a.all else sample(all_variants())
    variants = tuple(v for v in variants if a.k in v.id)
    results, seconds = run_all(variants, a.jobs, a.keep)
    text = summary(results, seconds)
    if a.results:
        a.results.write_text(text, encoding="utf-8")
    print(text)
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
