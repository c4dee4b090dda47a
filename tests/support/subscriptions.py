"""The example district synced and served with the notifier configured for loopback subscribers (fast polls and
retries), and what the Subscription tests need around it: the served students (sourcedId, school, Observation,
Patient), attendance events written into the store the way a sync records them, and Subscription resources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select

from sis2fhir.store.schema import attendance_events, runs
from tests.support import network, paths, serve_process, smart
from tests.support.served_district import AS_OF, CLIENT_IDS, HARBOR, RIVERSIDE, District, sync

TOPIC = "http://sis2fhir.org/fhir/SubscriptionTopic/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
SCOPES = "system/Patient.rs system/Observation.rs system/Consent.rs system/Organization.rs system/Subscription.cruds"
NOTIFY = {
    "allowed_endpoints": ["http://127.0.0.1"],
    "poll_seconds": 0.2,
    "initial_backoff_seconds": 0.2,
    "max_backoff_seconds": 1.0,
    "timeout_seconds": 5,
}


@dataclass(frozen=True)
class Student:
    student: str  # sourcedId
    school: str  # sourcedId
    school_year: int
    observation: str  # Observation id
    patient: str  # Patient id


def served_students(out: Path, recipient: str) -> list[Student]:
    """Every student x school `sync --out` wrote for the recipient (with an active Consent there)."""
    folder = out / recipient
    patients = {}
    for line in (folder / "Patient.ndjson").read_text().splitlines():
        p = json.loads(line)
        patients[p["id"]] = next(i["value"] for i in p["identifier"] if i["system"].endswith("student-sourced-id"))
    active = set()
    for line in (folder / "Consent.ndjson").read_text().splitlines():
        c = json.loads(line)
        if c["status"] == "active":
            active.add(c["patient"]["reference"].removeprefix("Patient/"))
    found = []
    for line in (folder / "Observation.ndjson").read_text().splitlines():
        o = json.loads(line)
        pid = o["subject"]["reference"].removeprefix("Patient/")
        if pid not in active:
            continue
        school = o["performer"][0]["identifier"]["value"]
        year = int(o["identifier"][0]["value"][:4])
        found.append(Student(patients[pid], school, year, o["id"], pid))
    return found


def record_event(store_url: str, who: Student, trigger: str = "into-chronic", episode: str = "1") -> int:
    """An attendance event as a finished sync records it (the latest run's id); its id."""
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            run_id = conn.scalar(select(func.max(runs.c.id)))
            assert run_id is not None, "no sync has run on this store"
            return int(
                conn.execute(
                    insert(attendance_events).values(
                        district=network.NAMESPACE,
                        school_year=who.school_year,
                        student_sourced_id=who.student,
                        school_sourced_id=who.school,
                        trigger=trigger,
                        episode=episode,
                        as_of="2026-03-31",
                        occurred_on="2026-03-31",
                        detail="{}",
                        run_id=run_id,
                        recorded_at=datetime.now(UTC),
                    )
                ).inserted_primary_key[0]
            )
    finally:
        engine.dispose()


def subscription(
    endpoint: str,
    trigger: str = "into-chronic",
    content: str = "id-only",
    filters: tuple[str, ...] = (),
    headers: tuple[str, ...] = (),
    extensions: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Tell the care team",
        "criteria": TOPIC + trigger,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
        },
    }
    if filters:
        resource["_criteria"] = {
            "extension": [{"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters]
        }
    if headers:
        resource["channel"]["header"] = list(headers)
    if extensions:
        resource["channel"]["extension"] = list(extensions)
    return resource


def write_config(tmp: Path, port: int, keys: dict[str, smart.ClientKeys], store_url: str, **notify: Any) -> Path:
    clients = [smart.api_client_config(CLIENT_IDS[r], r, k, SCOPES) for r, k in keys.items()]
    return network.write_config(
        tmp / "sis2fhir.yaml",
        store_url=store_url,
        api={"base_url": f"http://127.0.0.1:{port}", "clients": clients},
        notify={**NOTIFY, **notify},
    )


@contextmanager
def notifying_district(tmp: Path, as_of: str = AS_OF, **notify: Any) -> Iterator[District]:
    """The example district synced as of `as_of` and served (SQLite store in `tmp`) with the notifier on."""
    port = serve_process.free_port()
    keys = {RIVERSIDE: smart.make_client_keys("RS384"), HARBOR: smart.make_client_keys("ES384")}
    store_url = f"sqlite:///{tmp / 'state.sqlite'}"
    config = write_config(tmp, port, keys, store_url, **notify)
    out = tmp / "out"
    sync(config, out, paths.EXAMPLE, as_of)
    with serve_process.serving(config, port, tmp / "serve.log") as served:
        yield District(served.url, out, keys, served, config, store_url)
