"""The durable outbox on a real SQLite store: written before sending, retried with backoff, dead after its age,
a poison item never blocks the others, replay, withdrawal when consent ends, and the disclosure log."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, delete, insert, select, update

from sis2fhir.config import OutboxSettings
from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome
from sis2fhir.deliver.disclosure_log import CONFIRMED, IN_DOUBT, IN_FLIGHT
from sis2fhir.deliver.outbox import (
    DEAD,
    DELIVERED,
    PENDING,
    QUEUED,
    SENDING,
    SUPERSEDED,
    Envelope,
    Outbox,
    Subject,
    Withdrawals,
    idempotency_key,
)
from sis2fhir.store import open_store
from sis2fhir.store.schema import disclosures, outbox
from tests.support.postgres import STORES, new_store_url

DEST = "test:recipient-system"


class ScriptedDestination(Destination):
    """A destination whose answer per student is scripted; it records what it was handed."""

    name = DEST
    batch_size = 3

    def __init__(self, answers: dict[str, Outcome]) -> None:
        self.answers = answers
        self.seen: list[str] = []

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        for it in items:
            self.seen.append(it.student_sourced_id)
            outcome = self.answers.get(it.student_sourced_id, Outcome.DELIVERED)
            disclosed = [f"Observation/{it.student_sourced_id}/_history/1"] if outcome is Outcome.DELIVERED else []
            yield [
                DeliveryResult(
                    it.key,
                    outcome,
                    detail=f"scripted {outcome}",
                    disclosed=disclosed,
                    retry_after=120 if outcome is Outcome.RETRY else None,
                )
            ]


def envelope(student: str, content: str = "v1") -> Envelope:
    subject = Subject("NPI1", student)
    key = idempotency_key(DEST, "NPI1", subject, content.encode())
    item = DeliveryItem(
        key,
        "NPI1",
        student,
        f"state-{student}",
        f"consent-{student}",
        resources=[{"resourceType": "Observation", "id": student, "note": content}],
    )
    return Envelope(DEST, subject, item)


@pytest.fixture(params=STORES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The same outbox on both stores: SQLite (the default) and PostgreSQL (for several workers)."""
    eng = open_store(new_store_url(request, tmp_path, "outbox"))
    yield eng
    eng.dispose()


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.student_sourced_id: r.status for r in conn.execute(select(outbox)) if r.status != SUPERSEDED}


def test_items_are_written_down_before_any_delivery(engine: Engine) -> None:
    box = Outbox(engine)
    assert box.enqueue([envelope("s1"), envelope("s2")]) == 2
    assert statuses(engine) == {"s1": QUEUED, "s2": QUEUED}
    asked = [envelope(s).item.key for s in ("s1", "s2", "s3")]
    assert box.known_among(asked) == {envelope("s1").item.key, envelope("s2").item.key}


def test_a_poison_item_does_not_block_the_others(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope(s) for s in ("s1", "bad", "s3", "s4", "late")])
    dest = ScriptedDestination({"bad": Outcome.DEAD, "late": Outcome.RETRY})
    counts = asyncio.run(box.drain({DEST: dest}))
    assert counts == {DELIVERED: 3, DEAD: 1, QUEUED: 1}
    assert statuses(engine) == {"s1": DELIVERED, "bad": DEAD, "s3": DELIVERED, "s4": DELIVERED, "late": QUEUED}
    assert sorted(dest.seen) == ["bad", "late", "s1", "s3", "s4"]  # each tried once: no tight retry loop


def test_a_retry_waits_at_least_what_the_recipient_asked(engine: Engine) -> None:
    box = Outbox(engine, OutboxSettings(initial_backoff_seconds=1, max_backoff_seconds=10))
    box.enqueue([envelope("late")])
    asyncio.run(box.drain({DEST: ScriptedDestination({"late": Outcome.RETRY})}))
    with engine.connect() as conn:
        row = conn.execute(select(outbox)).one()
    assert row.attempts == 1 and "scripted retry" in row.last_error
    wait = row.next_attempt_at - row.updated_at
    assert wait >= timedelta(seconds=119)  # Retry-After: 120 beats the 1 s initial backoff
    assert box.due(DEST, 10) == []  # not due again yet


def test_an_item_older_than_the_retry_window_goes_to_the_dead_letters(engine: Engine) -> None:
    box = Outbox(engine, OutboxSettings(max_age_hours=72))
    box.enqueue([envelope("late")])
    with engine.begin() as conn:  # it has been failing for three days and a bit
        created = conn.execute(select(outbox.c.created_at)).scalar_one()
        conn.execute(update(outbox).values(created_at=created - timedelta(hours=73)))
    asyncio.run(box.drain({DEST: ScriptedDestination({"late": Outcome.RETRY})}))
    with engine.connect() as conn:
        row = conn.execute(select(outbox)).one()
    assert row.status == DEAD
    assert row.last_error.startswith("gave up after 1 attempts")


def test_replay_gives_dead_letters_another_go(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope("bad")])
    asyncio.run(box.drain({DEST: ScriptedDestination({"bad": Outcome.DEAD})}))
    key = envelope("bad").item.key
    assert box.make_due((DEAD,), list(box.statuses_by_key_prefix(key[:12]))) == 1
    asyncio.run(box.drain({DEST: ScriptedDestination({})}))
    assert statuses(engine) == {"bad": DELIVERED}


def test_pending_items_are_tried_again_on_the_next_drain(engine: Engine) -> None:
    box = Outbox(engine, OutboxSettings(initial_backoff_seconds=1))
    box.enqueue([envelope("unmatched")])
    asyncio.run(box.drain({DEST: ScriptedDestination({"unmatched": Outcome.PENDING})}))
    assert statuses(engine) == {"unmatched": PENDING}
    box.make_due()
    asyncio.run(box.drain({DEST: ScriptedDestination({})}))
    assert statuses(engine) == {"unmatched": DELIVERED}


def test_newer_content_supersedes_what_was_not_yet_delivered(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope("s1", "monday")])
    box.enqueue([envelope("s1", "tuesday")])
    dest = ScriptedDestination({})
    asyncio.run(box.drain({DEST: dest}))
    assert dest.seen == ["s1"]  # only once, and only the newer one
    with engine.connect() as conn:
        delivered = conn.execute(select(outbox).where(outbox.c.status == DELIVERED)).one()
    assert orjson.loads(delivered.payload)["resources"][0]["note"] == "tuesday"


def test_withdrawn_items_are_never_sent(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope("s1"), envelope("s2")])
    assert box.withdraw(Withdrawals.of([(DEST, Subject("NPI1", "s1"))])) == 1
    dest = ScriptedDestination({})
    asyncio.run(box.drain({DEST: dest}))
    assert dest.seen == ["s2"]


def test_a_runs_withdrawals_cancel_those_students_items_and_their_per_school_messages_only(engine: Engine) -> None:
    box = Outbox(engine)
    per_school = dataclasses.replace(envelope("s3"), subject=Subject("NPI1", "s3", "sch-1"))  # an HL7 v2 message
    box.enqueue([envelope("s1"), envelope("s2"), per_school, envelope("s4"), envelope("s5")])
    withdrawals = Withdrawals()
    for student in ("s4", "s3", "s1", "s9"):  # in no order: as the mapping workers' chunks come back
        withdrawals.add(DEST, Subject("NPI1", student))
    withdrawals.add("other:destination", Subject("NPI1", "s2"))  # the same student elsewhere: not this outbox's
    withdrawals.add(DEST, Subject("NPI2", "s5"))  # another recipient
    assert box.withdraw(withdrawals) == 3
    assert statuses(engine) == {"s2": QUEUED, "s5": QUEUED}


def test_each_delivery_is_in_the_disclosure_log_with_its_consent(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope("s1"), envelope("bad")])
    asyncio.run(box.drain({DEST: ScriptedDestination({"bad": Outcome.DEAD})}))
    with engine.connect() as conn:
        rows = conn.execute(select(disclosures)).all()
    assert len(rows) == 1
    (row,) = rows
    assert (row.student_sourced_id, row.state_student_id, row.recipient, row.consent_id) == (
        "s1",
        "state-s1",
        "NPI1",
        "consent-s1",
    )
    assert orjson.loads(row.disclosed) == ["Observation/s1/_history/1"]


def test_a_destination_that_raises_loses_nothing(engine: Engine) -> None:
    class Broken(ScriptedDestination):
        async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
            raise ConnectionError("boom")
            yield []

    box = Outbox(engine)
    box.enqueue([envelope("s1")])
    counts = asyncio.run(box.drain({DEST: Broken({})}))
    assert counts == {QUEUED: 1}
    assert statuses(engine) == {"s1": QUEUED}


def certainties(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(disclosures).order_by(disclosures.c.id)).all()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r.student_sourced_id, []).append(r.certainty)
    return out


class Stops(ScriptedDestination):
    """Confirms the first item, then the process "dies" (the drain is abandoned) while the rest are out."""

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        self.seen += [i.student_sourced_id for i in items]
        yield [DeliveryResult(items[0].key, Outcome.DELIVERED, disclosed=["Observation/x/_history/1"])]
        raise SystemExit  # not an Exception: nothing of ours gets to record the others


def test_items_are_logged_before_they_go_out_and_confirmed_one_answer_at_a_time(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope(s) for s in ("s1", "s2", "s3")])
    with pytest.raises(SystemExit):
        asyncio.run(box.drain({DEST: Stops({})}))
    # what a kill -9 at that moment leaves: s1 confirmed, s2 and s3 in flight and logged as possibly disclosed
    assert statuses(engine) == {"s1": DELIVERED, "s2": SENDING, "s3": SENDING}
    assert certainties(engine) == {"s1": [CONFIRMED], "s2": [IN_FLIGHT], "s3": [IN_FLIGHT]}
    with engine.connect() as conn:
        s2 = conn.execute(select(disclosures).where(disclosures.c.student_sourced_id == "s2")).one()
    assert orjson.loads(s2.disclosed) == ["Observation/s2"]  # what was sent, by id (no business identifier here)
    # they count as held by the recipient, so a revocation reaches it
    assert box.delivered_subjects([DEST]) == {
        (DEST, Subject("NPI1", "s1")),
        (DEST, Subject("NPI1", "s2")),
        (DEST, Subject("NPI1", "s3")),
    }
    # a sync asks only about the subjects a revocation notice may be about (disclosure.revocation_subjects)
    among = {Subject("NPI1", "s2"), Subject("NPI1", "s9"), Subject("NPI2", "s3")}
    assert box.delivered_subjects([DEST], among=among) == {(DEST, Subject("NPI1", "s2"))}
    assert box.delivered_subjects([DEST], among=set()) == set()


def test_an_answer_is_logged_once_even_when_its_provisional_row_is_missing_or_doubled(engine: Engine) -> None:
    """A confirmation is written over the item's provisional row; a key that has none when the answer comes (taken
    away meanwhile), or two, still ends with one confirmed row, as for every other key."""
    box = Outbox(engine)
    box.enqueue([envelope(s) for s in ("s1", "s2", "s3", "s4")])
    dest = ScriptedDestination({"s4": Outcome.DEAD})
    items = box.due(DEST, 10)
    box.begin_sending(dest, items)
    with engine.begin() as conn:
        conn.execute(delete(disclosures).where(disclosures.c.student_sourced_id == "s2"))
        (s3,) = conn.execute(select(disclosures).where(disclosures.c.student_sourced_id == "s3")).mappings().all()
        conn.execute(insert(disclosures), [{c: v for c, v in s3.items() if c != "id"}])
    assert certainties(engine) == {"s1": [IN_FLIGHT], "s3": [IN_FLIGHT, IN_FLIGHT], "s4": [IN_FLIGHT]}
    asyncio.run(box.deliver_batch(DEST, dest, items))
    assert certainties(engine) == {"s1": [CONFIRMED], "s2": [CONFIRMED], "s3": [CONFIRMED]}
    with engine.connect() as conn:
        rows = conn.execute(select(disclosures).order_by(disclosures.c.student_sourced_id)).all()
    assert [orjson.loads(r.disclosed) for r in rows] == [[f"Observation/{s}/_history/1"] for s in ("s1", "s2", "s3")]
    assert [(r.state_student_id, r.consent_id) for r in rows] == [
        (f"state-{s}", f"consent-{s}") for s in ("s1", "s2", "s3")
    ]


def test_after_a_crash_items_in_flight_are_in_doubt_retried_or_withdrawn(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope(s) for s in ("s1", "s2", "s3")])
    with pytest.raises(SystemExit):
        asyncio.run(box.drain({DEST: Stops({})}))
    assert box.recover_in_doubt() == 2  # the next start
    assert statuses(engine) == {"s1": DELIVERED, "s2": QUEUED, "s3": QUEUED}
    revoked = Withdrawals.of([(DEST, Subject("NPI1", "s3"))])  # s3's parent revoked meanwhile: not sent again
    assert box.withdraw(revoked) == 1
    dest = ScriptedDestination({})
    asyncio.run(box.drain({DEST: dest}))
    assert dest.seen == ["s2"]  # sent once more (idempotent at the recipient)
    assert certainties(engine) == {"s1": [CONFIRMED], "s2": [IN_DOUBT, CONFIRMED], "s3": [IN_DOUBT]}
    assert (DEST, Subject("NPI1", "s3")) in box.delivered_subjects(
        [DEST]
    )  # still possibly held: revocation notices go there


def test_an_answer_that_never_came_is_logged_in_doubt_and_retried(engine: Engine) -> None:
    box = Outbox(engine, OutboxSettings(initial_backoff_seconds=1))
    box.enqueue([envelope("s1"), envelope("s2")])
    dest = ScriptedDestination({"s1": Outcome.IN_DOUBT, "s2": Outcome.RETRY})
    asyncio.run(box.drain({DEST: dest}))
    assert statuses(engine) == {"s1": QUEUED, "s2": QUEUED}
    assert certainties(engine) == {"s1": [IN_DOUBT]}  # s2 certainly did not arrive: no row
    box.make_due()
    asyncio.run(box.drain({DEST: ScriptedDestination({})}))
    assert certainties(engine) == {"s1": [IN_DOUBT, CONFIRMED], "s2": [CONFIRMED]}


def test_an_item_a_destination_leaves_unanswered_is_in_doubt(engine: Engine) -> None:
    class Forgets(ScriptedDestination):
        async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
            yield [DeliveryResult(items[0].key, Outcome.DELIVERED, disclosed=["Observation/a/_history/1"])]

    box = Outbox(engine)
    box.enqueue([envelope("s1"), envelope("s2")])
    counts = asyncio.run(box.drain({DEST: Forgets({})}))
    assert counts == {DELIVERED: 1, QUEUED: 1}
    assert certainties(engine) == {"s1": [CONFIRMED], "s2": [IN_DOUBT]}


def test_content_that_comes_back_after_being_superseded_is_queued_again(engine: Engine) -> None:
    box = Outbox(engine)
    box.enqueue([envelope("s1", "monday")])
    box.enqueue([envelope("s1", "tuesday")])  # monday superseded before it went out
    box.enqueue([envelope("s1", "monday")])  # a correction put it back: the same key, revived, not a second row
    dest = ScriptedDestination({})
    asyncio.run(box.drain({DEST: dest}))
    with engine.connect() as conn:
        delivered = conn.execute(select(outbox).where(outbox.c.status == DELIVERED)).one()
    assert orjson.loads(delivered.payload)["resources"][0]["note"] == "monday"


def test_the_disclosures_command_shows_what_is_in_doubt(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sis2fhir.cli import app

    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    box = Outbox(open_store(url))
    box.enqueue([envelope("s1"), envelope("s2")])
    with pytest.raises(SystemExit):
        asyncio.run(box.drain({DEST: Stops({})}))
    box.recover_in_doubt()
    shown = CliRunner().invoke(app, ["disclosures", "--student", "s2", "--store", url], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "in doubt (possibly)" in shown.output and "Observation/s2" in shown.output
    assert "treated as disclosed" in shown.output
    confirmed = CliRunner().invoke(app, ["disclosures", "--student", "s1", "--store", url, "--json"])
    assert orjson.loads(confirmed.output.splitlines()[0])["certainty"] == "confirmed"


def test_items_in_doubt_the_recipient_holds_are_settled_as_delivered(engine: Engine) -> None:
    class Knows(ScriptedDestination):
        async def find_held(self, items: Sequence[DeliveryItem]) -> dict[str, list[str]]:
            return {
                i.key: [f"Observation/{i.student_sourced_id}/_history/4"] for i in items if i.student_sourced_id == "s2"
            }

    box = Outbox(engine)
    box.enqueue([envelope(s) for s in ("s1", "s2", "s3")])
    with pytest.raises(SystemExit):
        asyncio.run(box.drain({DEST: Stops({})}))
    box.recover_in_doubt()
    assert asyncio.run(box.settle_in_doubt({DEST: Knows({})})) == 1
    assert statuses(engine) == {"s1": DELIVERED, "s2": DELIVERED, "s3": QUEUED}
    assert certainties(engine) == {"s1": [CONFIRMED], "s2": [CONFIRMED], "s3": [IN_DOUBT]}
    with engine.connect() as conn:
        s2 = conn.execute(select(disclosures).where(disclosures.c.student_sourced_id == "s2")).one()
    assert orjson.loads(s2.disclosed) == ["Observation/s2/_history/4"]  # what the recipient stored
    dest = ScriptedDestination({})
    asyncio.run(box.drain({DEST: dest}))
    assert dest.seen == ["s3"]  # s2 is not sent again


def test_a_local_folder_item_caught_in_flight_is_written_again_by_the_next_run(engine: Engine) -> None:
    box = Outbox(engine)
    folder = ScriptedDestination({})
    first = [envelope("s1")]
    # written down in flight without a payload (the folder will hold it); the process dies before the write
    box.enqueue(first, without_payload={first[0].item.key}, sending=folder)
    assert statuses(engine) == {"s1": SENDING} and certainties(engine) == {"s1": [IN_FLIGHT]}
    assert box.recover_in_doubt() == 1
    assert statuses(engine) == {}  # set aside (nothing to re-send it from) ...
    assert box.known_among([envelope("s1").item.key]) == set()  # ... so the next run builds it again
    assert (DEST, Subject("NPI1", "s1")) in box.delivered_subjects([DEST])  # and meanwhile it counts as held
    again = [envelope("s1")]
    box.enqueue(again, without_payload={again[0].item.key}, sending=folder)
    counts = asyncio.run(box.deliver_batch(DEST, folder, [again[0].item], fresh=True))
    assert counts == {DELIVERED: 1}
    assert statuses(engine) == {"s1": DELIVERED}
    assert certainties(engine) == {"s1": [IN_DOUBT, CONFIRMED]}
