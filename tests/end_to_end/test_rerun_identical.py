"""The re-run that finds nothing changed (issue 12): when the input, settings, as-of date and recipients are those of
the district's last completed run, the sync reads, measures and maps nothing, says so, writes the earlier run's row
report and still delivers what the outbox holds; after any single change, or any doubt, it runs in full."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from sis2fhir import pipeline
from sis2fhir.cli import app
from sis2fhir.service import sync as service_sync
from sis2fhir.store import open_store
from sis2fhir.store.runs import start_run
from sis2fhir.store.schema import attendance_events, attendance_summaries, disclosures, outbox, run_verdicts
from sis2fhir.store.verdicts import record as record_verdict
from tests.support import paths

EXAMPLE = paths.ROOT / "examples" / "district"
AS_OF = "2026-03-31"
DISTRICT = "urn:sis2fhir:district:example"
runner = CliRunner()


class Calls:
    """How often the full pipeline and the attendance engine were called (the work a skipped run must not do)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pipeline = 0
        self.engine = 0
        full, choose = service_sync.run_pipeline, pipeline.choose_engine

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            self.pipeline += 1
            return full(*args, **kwargs)

        def counted_engine(*args: Any, **kwargs: Any) -> Any:
            self.engine += 1
            return choose(*args, **kwargs)

        monkeypatch.setattr(service_sync, "run_pipeline", counted_pipeline)
        monkeypatch.setattr(pipeline, "choose_engine", counted_engine)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(EXAMPLE, copy)
    return copy


def sync(export: Path, out: Path, *extra: str, as_of: str = AS_OF) -> tuple[int, str]:
    res = runner.invoke(app, ["sync", str(export), "--as-of", as_of, "--out", str(out), *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def files_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.ndjson"))}


def store_counts(out: Path) -> dict[str, int]:
    engine = open_store(f"sqlite:///{out / 'state.sqlite'}")
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (disclosures, attendance_events, attendance_summaries, outbox, run_verdicts)
            }
    finally:
        engine.dispose()


def test_an_identical_rerun_reads_nothing_and_writes_the_same_report(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    code, first = sync(export, out)
    assert code == 0, first
    report, written, stored = (out / "rows-report.csv").read_bytes(), files_of(out), store_counts(out)
    assert stored["disclosures"] > 0 and stored["attendance_events"] > 0
    calls = Calls(monkeypatch)
    for _ in range(2):  # a re-run, then a re-run of the re-run: both stand on run 1
        code, again = sync(export, out)
        assert code == 0, again
        assert "0 changes: the input is identical to run 1; nothing new to deliver." in again
        assert calls.pipeline == 0 and calls.engine == 0
        assert (out / "rows-report.csv").read_bytes() == report
        assert files_of(out) == written
        # nothing was disclosed, no attendance event or summary recorded, no verdict (the baseline stays run 1)
        assert store_counts(out) == stored
    assert "students in roster" in again and "school year 2025-08-25 to 2026-06-12" in again


def test_the_report_of_a_skipped_run_is_copied_where_it_is_asked_for(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert sync(export, out)[0] == 0
    calls = Calls(monkeypatch)
    elsewhere = tmp_path / "reports" / "again.csv"
    code, output = sync(export, out, "--report", str(elsewhere))
    assert code == 0 and calls.pipeline == 0, output
    assert elsewhere.read_bytes() == (out / "rows-report.csv").read_bytes()


def test_rejected_rows_keep_their_exit_code_on_a_skipped_run(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (export / "attendance.csv").open("a", encoding="utf-8") as f:  # a student nobody enrolled: an error
        f.write("stu-nobody,,org-school-01,2026-01-05,Unexcused Absence,1,\n")
    out = tmp_path / "out"
    code, first = sync(export, out)
    assert code == 3, first
    calls = Calls(monkeypatch)
    code, again = sync(export, out)
    assert code == 3 and calls.pipeline == 0, again
    assert "input rows rejected (not used)" in again


def _append(name: str, text: str) -> Callable[[Path, Path], list[str]]:
    def change(export: Path, _tmp: Path) -> list[str]:
        with (export / name).open("a", encoding="utf-8") as f:
            f.write(text)
        return []

    return change


def _drop_last_consent(export: Path, _tmp: Path) -> list[str]:
    lines = (export / "consents.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (export / "consents.csv").write_text("".join(lines[:-1]), encoding="utf-8")
    return []


def _config(text: str) -> Callable[[Path, Path], list[str]]:
    def change(_export: Path, tmp: Path) -> list[str]:
        config = tmp / "sis2fhir.yaml"
        config.write_text(text, encoding="utf-8")
        return ["--config", str(config)]

    return change


def _args(*args: str) -> Callable[[Path, Path], list[str]]:
    return lambda _export, tmp: [a.replace("TMP", str(tmp)) for a in args]


def _in_store(write: Callable[[Any], None]) -> Callable[[Path, Path], list[str]]:
    def change(_export: Path, tmp: Path) -> list[str]:
        engine = open_store(f"sqlite:///{tmp / 'out' / 'state.sqlite'}")
        try:
            write(engine)
        finally:
            engine.dispose()
        return []

    return change


def _crashed_run(engine: Any) -> None:  # a run that started and never finished (killed while it measured)
    start_run(engine, datetime.now(UTC), date(2026, 3, 31), "export")


def _stopped_run(engine: Any) -> None:  # a run of the district that a sanity gate stopped
    run_id = start_run(engine, datetime.now(UTC), date(2026, 3, 31), "export")
    record_verdict(
        engine, run_id, DISTRICT, school_year=2026, as_of=date(2026, 3, 31), status="stopped", accept_reason="",
        findings=[], measures={},
    )  # fmt: skip


def _stopped_by_a_gate(export: Path, tmp: Path) -> list[str]:  # a real sync in between, stopped: exit 1
    code, output = sync(export, tmp / "out", as_of="2026-03-30")
    assert code == 1 and "as-of-before-baseline" in output, output
    return []


def _outbox_touched(engine: Any) -> None:  # e.g. `outbox replay` or a retry since the run
    with engine.begin() as conn:
        first = conn.execute(select(func.min(outbox.c.id))).scalar_one()
        conn.execute(update(outbox).where(outbox.c.id == first).values(status="dead"))


def _report_gone(_export: Path, tmp: Path) -> list[str]:
    (tmp / "out" / "rows-report.csv").unlink()
    return []


CHANGES: dict[str, Callable[[Path, Path], list[str]]] = {
    "one byte of attendance": _append("attendance.csv", "\n"),
    "a consent row": _drop_last_consent,
    "a file added to the export": _append("notes.txt", "x"),
    "a setting": _config("engine: streaming\n"),
    "the policy": _args("--policy", "crdc"),
    "the as-of date": _args("--as-of", "2026-04-01"),
    "a new destination": _args("--destination", "TMP/second"),
    "--accept-change": _args("--accept-change", "checking"),
    "an earlier run that crashed": _in_store(_crashed_run),
    "an earlier run that was stopped": _in_store(_stopped_run),
    "an earlier sync stopped by a sanity gate": _stopped_by_a_gate,
    "the outbox touched since": _in_store(_outbox_touched),
    "the earlier row report gone": _report_gone,
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_any_single_change_runs_the_full_sync(
    change: str, export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert sync(export, out)[0] == 0
    extra = CHANGES[change](export, tmp_path)
    as_of = AS_OF
    if "--as-of" in extra:
        i = extra.index("--as-of")
        as_of, extra = extra[i + 1], extra[:i] + extra[i + 2 :]
    calls = Calls(monkeypatch)
    code, output = sync(export, out, *extra, as_of=as_of)
    assert calls.pipeline == 1 and calls.engine == 1, output
    assert "the input is identical" not in output
    assert code in (0, 4), output


def test_a_full_run_after_a_change_is_stood_on_by_the_next_identical_one(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert sync(export, out)[0] == 0
    _drop_last_consent(export, tmp_path)
    assert sync(export, out)[0] == 0
    calls = Calls(monkeypatch)
    code, output = sync(export, out)
    assert code == 0 and calls.pipeline == 0 and "identical to run 2" in output, output


def test_the_fingerprint_does_not_depend_on_the_process(export: Path) -> None:
    """Sets (the policy's absence categories) iterate in another order under another hash seed: the fingerprint
    must not."""
    script = (
        "import sys; from datetime import date; from pathlib import Path; from sis2fhir.config import Settings; "
        "from sis2fhir.service.fingerprint import run_fingerprint; "
        "f = run_fingerprint(Path(sys.argv[1]), date(2026, 3, 31), Settings(), {}, [], {}); print(f.digest)"
    )
    digests = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script, str(export)], env=env, capture_output=True, text=True, check=True
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_a_run_that_left_items_waiting_for_a_patient_match_is_not_stood_on(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item waiting for a patient match needs the roster's demographics, which a skipped run does not read: as
    if run 1 had ended with one item pending (its recorded outbox state says so), the re-run goes in full."""
    from sis2fhir.store.run_fingerprints import outbox_mark
    from sis2fhir.store.schema import run_fingerprints

    out = tmp_path / "out"
    assert sync(export, out)[0] == 0
    engine = open_store(f"sqlite:///{out / 'state.sqlite'}")
    try:
        with engine.begin() as conn:
            first = conn.execute(select(func.min(outbox.c.id))).scalar()
            conn.execute(update(outbox).where(outbox.c.id == first).values(status="pending"))
            conn.execute(update(run_fingerprints).values(outbox_mark=outbox_mark(conn)))
    finally:
        engine.dispose()
    calls = Calls(monkeypatch)
    code, output = sync(export, out)
    assert code == 0 and calls.pipeline == 1, output


@pytest.mark.timeout(30)  # a regression hangs on open(): fail fast, not after the suite's 300 s
def test_an_export_holding_a_named_pipe_has_no_fingerprint(export: Path) -> None:
    """Opening a named pipe that no one writes to waits for ever: the fingerprint must not open it (the full run then
    reports the file); the fuzz set's path-attendance-fifo variant hung on this."""
    from sis2fhir.config import Settings
    from sis2fhir.service.fingerprint import run_fingerprint

    os.mkfifo(export / "extra.fifo")
    assert run_fingerprint(export, date(2026, 3, 31), Settings(), {}, [], {}) is None


def test_a_run_let_through_by_accept_change_is_not_stood_on(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert sync(export, out)[0] == 0
    code, accepted = sync(export, out, "--accept-change", "a re-issued export", as_of="2026-03-30")
    assert code == 0 and "accepted and recorded with the run" in accepted, accepted
    calls = Calls(monkeypatch)
    code, again = sync(export, out, as_of="2026-03-30")  # identical to the accepted run, without the reason
    assert calls.pipeline == 1 and "the input is identical" not in again, again
    code, third = sync(export, out, as_of="2026-03-30")  # identical to the clean run just made
    assert code == 0 and calls.pipeline == 1 and "identical to run 3" in third, third


def test_a_zip_export_is_fingerprinted_by_its_bytes(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    def zipped(changed: bool) -> Path:
        archive = tmp_path / "export.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for f in sorted(export.iterdir()):
                data = f.read_bytes()
                member = zipfile.ZipInfo(f.name, date_time=(2026, 3, 31, 0, 0, 0))  # the same bytes when unchanged
                z.writestr(member, data + b"\n" if changed and f.name == "attendance.csv" else data)
        return archive

    out = tmp_path / "out"
    assert sync(zipped(False), out)[0] == 0
    calls = Calls(monkeypatch)
    code, again = sync(zipped(False), out)  # written anew, the same bytes
    assert code == 0 and calls.pipeline == 0 and "identical to run 1" in again, again
    code, changed = sync(zipped(True), out)
    assert calls.pipeline == 1 and "the input is identical" not in changed, changed
