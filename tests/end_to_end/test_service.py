"""The service layer as a web server would call it (no command line): sync the example district into a folder,
then read back what the operator commands show, as typed values; faults arrive as the project's exceptions."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from sis2fhir.config import Settings, load_settings
from sis2fhir.deliver.outbox import DELIVERED
from sis2fhir.errors import Exit, StoreMissing, UsageError
from sis2fhir.pipeline import SyncResult
from sis2fhir.service import outbox, records, sync
from sis2fhir.service.sync import SyncRequest
from tests.support import paths

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SyncResult, Path]:
    out = tmp_path_factory.mktemp("service") / "out"
    settings = load_settings(None, store_url=f"sqlite:///{tmp_path_factory.getbasetemp() / 'service-state.sqlite'}")
    settings.workers = 1
    request = SyncRequest(EXAMPLE, date(2026, 3, 31), settings, out / "rows-report.csv", out_dir=out)
    return settings, sync.sync(request), out


def test_a_sync_returns_its_result_and_writes_the_row_report(synced: tuple[Settings, SyncResult, Path]) -> None:
    _, result, out = synced
    assert result.students > 0 and result.changes > 0
    assert (out / "rows-report.csv").is_file()
    assert sync.exit_code(result) == Exit.OK  # every row used, everything delivered to the folder


def test_the_outbox_listing_counts_what_the_sync_delivered(synced: tuple[Settings, SyncResult, Path]) -> None:
    settings, result, _ = synced
    listing = outbox.listing(settings, DELIVERED, limit=5)
    assert sum(n for (_, st), n in listing.counts.items() if st == DELIVERED) == result.delivery["delivered"]
    assert len(listing.items) == 5 and all(i.status == DELIVERED for i in listing.items)


def test_a_students_disclosures_are_typed_rows(synced: tuple[Settings, SyncResult, Path]) -> None:
    settings, _, _ = synced
    student = outbox.items(settings, DELIVERED, limit=1)[0].student_sourced_id
    rows = records.disclosures(settings, student)
    assert rows and all(r.student_sourced_id == student and r.confirmed for r in rows)
    assert all(isinstance(r.disclosed, list) and r.disclosed for r in rows)
    assert records.disclosures(settings, "no-such-student") == []


def test_a_key_prefix_that_names_no_dead_letter_is_a_usage_error(
    synced: tuple[Settings, SyncResult, Path],
) -> None:
    settings, _, _ = synced
    delivered = outbox.items(settings, DELIVERED, limit=1)[0].key
    with outbox.writing(settings, "test") as ob:
        with pytest.raises(UsageError, match="not a dead letter") as e:
            outbox.dead_keys(ob, [delivered[:20]])
        assert e.value.exit_code == Exit.USAGE
        with pytest.raises(UsageError, match="no outbox item"):
            outbox.dead_keys(ob, ["zz-not-a-key"])


def test_a_store_no_sync_wrote_is_refused_and_not_created(tmp_path: Path) -> None:
    settings = load_settings(None, store_url=f"sqlite:///{tmp_path / 'missing.sqlite'}")
    with pytest.raises(StoreMissing):
        outbox.listing(settings)
    with pytest.raises(StoreMissing):
        records.disclosures(settings, "stu-0000140")
    assert list(tmp_path.iterdir()) == []
