"""The whole path, as the issue's check runs it: the example district synced by the real CLI over successive as-of
dates while `sis2fhir serve` runs, two recipients' subscribers (on loopback, their Subscriptions made with fhirpy
and their own client credentials) receiving exactly one into-chronic notification per crossing of a student
consented to their organization (the crossings computed by hand from the export's CSV files, in
tests/end_to_end/test_attendance_events.py), none for anyone else, none more when the syncs are re-run, and, for
one that was down over two syncs, everything it missed, numbered in order, when it is back. Every Bundle received
follows the Inferno rules."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from sqlalchemy import create_engine, func, select

from sis2fhir.store.schema import attendance_events, subscription_notifications, subscriptions
from tests.end_to_end.test_attendance_events import DATES, chronic_by_hand
from tests.support import inferno_rules, paths
from tests.support.served_district import HARBOR, RIVERSIDE, District, sync
from tests.support.subscriber import Subscriber, event_numbers, focuses
from tests.support.subscriptions import SCOPES, notifying_district, subscription

pytestmark = pytest.mark.integration
Key = tuple[str, str]  # (student sourcedId, school sourcedId)


def observations(out: Path, recipient: str) -> dict[str, Key]:
    """Observation id -> (student, school) of what the recipient's folder holds now (consented students only)."""
    found = {}
    for line in (out / recipient / "Observation.ndjson").read_text().splitlines():
        o = json.loads(line)
        value = o["identifier"][0]["value"]  # "<year>-<school>-<student>"
        school = o["performer"][0]["identifier"]["value"]
        found[o["id"]] = (value[len(f"{value[:4]}-{school}-") :], school)
    return found


def consented(recipient: str, on: date, state_ids: dict[str, str]) -> set[str]:
    """The students (sourcedIds) with a consent to `recipient` in effect on `on`, read from consents.csv: granted
    (active, or revoked since), its period holding the day, not revoked by then."""
    found = set()
    with (paths.EXAMPLE / "consents.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            if r["recipientOrganization"] != recipient or r["status"] not in ("active", "revoked"):
                continue
            start, end, revoked = r["periodStart"] or r["signedDate"], r["periodEnd"], r["revokedDate"]
            if start > on.isoformat() or (end and end < on.isoformat()) or (revoked and revoked <= on.isoformat()):
                continue
            student = r["studentSourcedId"] or state_ids.get(r["studentIdentifier"], "")
            if student:
                found.add(student)
    return found


def state_ids(out: Path, recipient: str) -> dict[str, str]:
    """State student id -> sourcedId of the Patients in the recipient's folder."""
    found = {}
    for line in (out / recipient / "Patient.ndjson").read_text().splitlines():
        p = json.loads(line)
        ids = {i["system"].replace(":", "/").rsplit("/", 1)[-1]: i["value"] for i in p["identifier"]}
        if "state-student-id" in ids:
            found[ids["state-student-id"]] = ids["student-sourced-id"]
    return found


def fanned_out(district: District, ids: list[str], limit: float = 120.0) -> None:
    """Until the notifier has taken every recorded event into account for these subscriptions (the next sync may
    change the served set the consent gate reads)."""
    engine = create_engine(district.store_url)
    try:
        deadline = time.monotonic() + limit
        while True:
            with engine.connect() as conn:
                last = conn.scalar(select(func.max(attendance_events.c.id))) or 0
                cursors = conn.scalars(select(subscriptions.c.cursor).where(subscriptions.c.id.in_(ids))).all()
            if len(cursors) == len(ids) and min(cursors) >= last:
                return
            assert time.monotonic() < deadline, "the notifier did not fan the events out"
            time.sleep(0.05)
    finally:
        engine.dispose()


def delivered_count(district: District, subscription_id: str) -> Callable[[], int]:
    """How many of the subscription's notifications are no longer queued, once none is (else -1)."""
    engine = create_engine(district.store_url)
    n = subscription_notifications

    def count() -> int:
        with engine.connect() as conn:
            statuses = conn.scalars(select(n.c.status).where(n.c.subscription_id == subscription_id)).all()
        return -1 if "queued" in statuses else sum(s == "delivered" for s in statuses)

    return count


def test_syncs_over_successive_dates_notify_each_crossing_once_to_its_organization_only(tmp_path: Path) -> None:
    first, steps = DATES[0], DATES[1:]
    riverside_hook, harbor_hook = Subscriber().start(), Subscriber().start()
    try:
        with notifying_district(tmp_path, as_of=first.isoformat()) as district:
            made: dict[str, dict[str, Any]] = {}
            for recipient, hook, content in (
                (RIVERSIDE, riverside_hook, "id-only"),
                (HARBOR, harbor_hook, "full-resource"),
            ):
                fhir = SyncFHIRClient(district.fhir, authorization=f"Bearer {district.token(recipient, SCOPES)}")
                sub = fhir.resource("Subscription", **subscription(hook.url, content=content))
                sub.save()
                made[recipient] = dict(sub.serialize())
                assert made[recipient]["status"] == "requested"
                hook.wait_for(lambda s: len(s.bundles("handshake")) == 1)
            ids = [m["id"] for m in made.values()]

            expected: dict[str, Counter[Key]] = {RIVERSIDE: Counter(), HARBOR: Counter()}
            seen: dict[str, dict[str, Key]] = {RIVERSIDE: {}, HARBOR: {}}  # Observation ids are stable over syncs
            known: dict[str, str] = {}
            was = {k: bool(v) for k, v in chronic_by_hand(first).items() if v is not None}
            for i, as_of in enumerate(steps):
                if i == len(steps) - 2:
                    riverside_hook.stop()  # down over the last two syncs
                sync(district.config, district.out, paths.EXAMPLE, as_of.isoformat())
                fanned_out(district, ids)
                crossed = set()
                for key, chronic in chronic_by_hand(as_of).items():
                    if chronic is True and not was.get(key, False):
                        crossed.add(key)
                    if chronic is not None:
                        was[key] = chronic
                for recipient in expected:
                    now_held = observations(district.out, recipient)  # what the sync serves it
                    seen[recipient].update(now_held)
                    known.update(state_ids(district.out, recipient))
                    allowed = consented(recipient, as_of, known)  # consented on the event's date
                    expected[recipient].update(k for k in crossed & set(now_held.values()) if k[0] in allowed)
            assert sum(expected[RIVERSIDE].values()) >= 3 and sum(expected[HARBOR].values()) >= 3

            # the same dates again, and an older one: nothing new
            sync(district.config, district.out, paths.EXAMPLE, steps[-1].isoformat())
            sync(district.config, district.out, paths.EXAMPLE, steps[1].isoformat(), "--accept-change", "replay")
            fanned_out(district, ids)

            riverside_hook.start()
            for recipient, hook in ((RIVERSIDE, riverside_hook), (HARBOR, harbor_hook)):
                sent = delivered_count(district, made[recipient]["id"])
                hook.wait_for(lambda s, n=sent: len(s.bundles("event-notification")) >= n() and n() > 0)
            for recipient, hook in ((RIVERSIDE, riverside_hook), (HARBOR, harbor_hook)):
                by_id = {f"{district.fhir}/Observation/{oid}": key for oid, key in seen[recipient].items()}
                bundles = hook.bundles("event-notification")
                numbers = [n for b in bundles for n in event_numbers(b)]
                assert numbers == list(range(1, len(numbers) + 1))  # every one, in order, never twice
                got = Counter(by_id.get(f, ("not this recipient's", f)) for b in bundles for f in focuses(b))
                assert got == expected[recipient], recipient
                for received in hook.received:
                    assert inferno_rules.problems(received, made[recipient]) == []
    finally:
        riverside_hook.stop()
        harbor_hook.stop()
