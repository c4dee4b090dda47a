"""The served set (deliver/served.py) that `sis2fhir serve` answers from equals, resource for resource, what a
`sync --out` folder holds for each recipient an API client is bound to; consent rules hold (a student not consented
to the recipient is absent; a revocation takes the student's Observations and Patient away with the next sync and
leaves the inactive Consent readable); a resource gets a new version only when its content changes. Real CLI runs
into real SQLite and PostgreSQL stores."""

from __future__ import annotations

import csv
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, select

from sis2fhir.service.served import ServedStore
from sis2fhir.store import open_store
from sis2fhir.store.schema import disclosures, served_resources
from tests.support.postgres import STORES, new_store_url
from tests.support.served import (
    NORTHFIELD,
    RIVERBEND,
    SIS2FHIR,
    copy_example,
    folder_lines,
    served_content,
    sync,
    write_config,
)


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_store_url(request, tmp_path, "served")


def versions(url: str, recipient: str) -> dict[tuple[str, str], int]:
    engine = create_engine(url)
    t = served_resources
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.resource_type, t.c.resource_id, t.c.version_id).where(t.c.recipient == recipient)
        ).all()
    engine.dispose()
    return {(rt, rid): v for rt, rid, v in rows}


def ids(lines: set[bytes]) -> set[str]:
    return {orjson.loads(line)["id"] for line in lines}


def test_the_served_set_is_the_out_folder_and_versions_change_only_with_content(url: str, tmp_path: Path) -> None:
    export, out = copy_example(tmp_path), tmp_path / "out"
    config = write_config(tmp_path / "sis2fhir.yaml", url, [RIVERBEND, NORTHFIELD])
    sync(export, out, config)
    for recipient in (RIVERBEND, NORTHFIELD):
        folder = folder_lines(out, recipient)
        assert set(folder) == {"Patient", "Organization", "Observation", "Consent"}
        assert served_content(url, recipient) == folder
    # a recipient no client is bound to is not served
    assert served_content(url, "1729034169") == {}
    assert set(versions(url, RIVERBEND).values()) == {1}

    sync(export, out, config)  # the same export again: nothing changes, no new version
    assert set(versions(url, RIVERBEND).values()) == {1}

    before = folder_lines(out, RIVERBEND)
    sync(export, out, config, as_of="2026-04-01")  # a day later: the Observations change, nothing else
    after = folder_lines(out, RIVERBEND)
    assert served_content(url, RIVERBEND) == after
    # those the folder held before with other content (the folder may gain new ones too: version 1)
    changed = ids(after["Observation"] - before["Observation"]) & ids(before["Observation"])
    assert changed
    for (rtype, rid), version in versions(url, RIVERBEND).items():
        assert version == (2 if rtype == "Observation" and rid in changed else 1), (rtype, rid)


def test_a_student_not_consented_to_the_recipient_is_absent(url: str, tmp_path: Path) -> None:
    export, out = copy_example(tmp_path), tmp_path / "out"
    sync(export, out, write_config(tmp_path / "sis2fhir.yaml", url, [RIVERBEND, NORTHFIELD]))
    riverbend, northfield = folder_lines(out, RIVERBEND), folder_lines(out, NORTHFIELD)
    only_northfield = ids(northfield["Patient"]) - ids(riverbend["Patient"])
    assert only_northfield
    store = ServedStore(open_store(url))
    with store:
        members = set(store.group_members(RIVERBEND))
        assert members == ids(riverbend["Patient"])
        for patient in sorted(only_northfield):
            assert store.read(RIVERBEND, "Patient", patient) is None
            assert store.read(NORTHFIELD, "Patient", patient) is not None
            assert store.search(RIVERBEND, "Observation", {"patient": [patient]}, 10, 0).total == 0
            assert store.search(RIVERBEND, "Consent", {"patient": [f"Patient/{patient}"]}, 10, 0).total == 0
        exported = {r.resource_id for r in store.export(RIVERBEND, ["Patient"], None)}
        assert exported == ids(riverbend["Patient"])


def revoke(export: Path, consent_id: str, on: str) -> str:
    """Mark a consent revoked in consents.csv; returns its student's sourcedId."""
    path = export / "consents.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    student = ""
    for row in rows:
        if row["consentId"] == consent_id:
            row["status"], row["revokedDate"], student = "revoked", on, row["studentSourcedId"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    assert student
    return student


def test_a_revocation_removes_observations_and_patient_with_the_next_sync(url: str, tmp_path: Path) -> None:
    export, out = copy_example(tmp_path), tmp_path / "out"
    config = write_config(tmp_path / "sis2fhir.yaml", url, [RIVERBEND, NORTHFIELD])
    sync(export, out, config)
    store = ServedStore(open_store(url))
    with store:
        before = {
            (r.resource_type, r.resource_id): r
            for t in ("Patient", "Observation", "Consent", "Organization")
            for r in store.export(RIVERBEND, [t], None)
        }
        student = revoke(export, "CNS-2026-0000003", "2026-03-20")  # stu-0000003's consent to Riverbend
        mine = {k for k, r in before.items() if r.student == student}
        assert {rt for rt, _ in mine} == {"Patient", "Observation", "Consent"}
        northfield_before = served_content(url, NORTHFIELD)

        sync(export, out, config)
        for rtype, rid in mine:
            found = store.read(RIVERBEND, rtype, rid)
            if rtype == "Consent":
                assert found is not None and orjson.loads(found.content)["status"] == "inactive"
                assert found.version_id == 2
            else:
                assert found is None, rtype
        patient = next(rid for rt, rid in mine if rt == "Patient")
        assert store.search(RIVERBEND, "Observation", {"patient": [patient]}, 10, 0).total == 0
        assert patient not in store.group_members(RIVERBEND)
        # everyone else's, and the Organizations, stay as they were; so does the other recipient's set
        after = {(r.resource_type, r.resource_id): r.version_id for r in store.export(RIVERBEND, [], None)}
        assert {k: before[k].version_id for k in before if k not in mine} == {
            k: v for k, v in after.items() if k not in mine
        }
        assert served_content(url, NORTHFIELD) == northfield_before

    # the revocation notice is in the FERPA log, as the folder's is
    engine = create_engine(url)
    with engine.connect() as conn:
        logged = conn.execute(
            select(disclosures.c.consent_id, disclosures.c.channel).where(
                disclosures.c.destination == "served", disclosures.c.student_sourced_id == student
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in logged].count(("CNS-2026-0000003", "push")) == 2


def drop_consents(export: Path, recipient: str, keep: set[str]) -> set[str]:
    """Remove the consents to `recipient` of every student not in `keep`; returns the students who lost theirs."""
    path = export / "consents.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    gone = {r["studentSourcedId"] for r in rows if r["recipientOrganization"] == recipient} - keep
    kept = [r for r in rows if not (r["recipientOrganization"] == recipient and r["studentSourcedId"] in gone)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return gone


def test_a_consent_gone_from_the_export_takes_everything_of_that_student_away(url: str, tmp_path: Path) -> None:
    export, out = copy_example(tmp_path), tmp_path / "out"
    config = write_config(tmp_path / "sis2fhir.yaml", url, [RIVERBEND])
    sync(export, out, config)
    store = ServedStore(open_store(url))
    with store:
        served = {r.student for r in store.export(RIVERBEND, ["Consent"], None)} - {None}
        keep = set(sorted(served)[:3])
        gone = drop_consents(export, RIVERBEND, keep) & served
        assert gone
        sync(export, out, config)
        left = [r for r in store.export(RIVERBEND, [], None)]
        assert {r.student for r in left} == keep | {None}  # None: the Organizations stay
        assert len(store.group_members(RIVERBEND)) == len(keep)


def test_reads_show_in_the_disclosures_command_beside_pushed_ones(url: str, tmp_path: Path) -> None:
    export, out = copy_example(tmp_path), tmp_path / "out"
    sync(export, out, write_config(tmp_path / "sis2fhir.yaml", url, [RIVERBEND]))
    with ServedStore(open_store(url)) as store:
        store.record_reads(
            RIVERBEND,
            "riverside-ehr",
            ["stu-0000003"],
            "Patient?identifier=1000314187",
            datetime(2026, 4, 1, 9, tzinfo=UTC),
        )
    done = subprocess.run(
        [str(SIS2FHIR), "disclosures", "--student", "stu-0000003", "--store", url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    how = {(r["destination"].split(":")[0], r["channel"], r["consent_id"]) for r in rows if r["recipient"] == RIVERBEND}
    assert how == {
        ("ndjson", "push", "CNS-2026-0000003"),
        ("served", "push", "CNS-2026-0000003"),
        ("api", "api-read", "CNS-2026-0000003"),
    }
    table = subprocess.run(
        [str(SIS2FHIR), "disclosures", "--student", "stu-0000003", "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert table.returncode == 0 and "API read" in table.stdout and "served to the API" in table.stdout
