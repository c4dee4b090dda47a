"""From attendance events to numbered notifications, and what a delivery's outcome does, on a real store a real
`sync` of the example district wrote (SQLite and PostgreSQL): the consent gate at fan-out and again at send time,
events of a sync still running held back, a number never given twice, retries with growing waits and, past
notify.max_age_hours, the subscription in `error` with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, update

from sis2fhir.config import Settings, load_settings
from sis2fhir.service.notifications import backoff, fan_out, next_delivery, record_outcome
from sis2fhir.store import open_store
from sis2fhir.store.schema import attendance_events, disclosures, runs, served_resources, subscription_notifications
from sis2fhir.store.subscriptions import StoredSubscription, get_subscription, insert_subscription
from tests.support.postgres import STORES, new_store_url
from tests.support.served import NORTHFIELD, RIVERBEND, copy_example, sync, write_config
from tests.support.subscriptions import Student, served_students

NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=STORES)
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp(f"notify-{request.param}")
    url = new_store_url(request, tmp, "served")
    config = write_config(tmp / "sis2fhir.yaml", url, [RIVERBEND, NORTHFIELD])
    sync(copy_example(tmp), tmp / "out", config)
    yield config, tmp / "out"


@pytest.fixture
def engine(synced: tuple[Path, Path]) -> Iterator[Engine]:
    settings = load_settings(synced[0])
    e = open_store(settings.store_url)
    yield e
    with e.begin() as conn:  # each test its own events and subscriptions
        conn.execute(attendance_events.delete())
        conn.execute(subscription_notifications.delete())
        conn.exec_driver_sql("DELETE FROM subscriptions")
    e.dispose()


def settings_of(synced: tuple[Path, Path], **notify: object) -> Settings:
    base = load_settings(synced[0])
    return base.model_copy(update={"notify": base.notify.model_copy(update=notify)})


def students(synced: tuple[Path, Path], recipient: str = RIVERBEND) -> list[Student]:
    return served_students(synced[1], recipient)


def subscribe(engine: Engine, recipient: str = RIVERBEND, trigger: str = "into-chronic", **changes: object) -> str:
    sub = StoredSubscription(
        id=f"sub-{datetime.now(UTC).timestamp()}".replace(".", ""),
        client_id=f"client-{recipient}",
        recipient=recipient,
        status="active",
        topic=f"http://sis2fhir.org/fhir/SubscriptionTopic/{trigger}",
        trigger=trigger,
        filters={},
        endpoint="http://127.0.0.1:9/hook",
        content="id-only",
        headers=(),
        heartbeat_seconds=None,
        timeout_seconds=None,
        max_count=None,
        secret=None,
        resource={},
        events=0,
        cursor=0,
        error="",
        version_id=1,
        created_at=NOW,
        updated_at=NOW,
        last_sent_at=None,
    )
    return insert_subscription(engine, replace(sub, **changes)).id  # type: ignore[arg-type]


def event(
    engine: Engine,
    who: Student,
    trigger: str = "into-chronic",
    episode: str = "1",
    run_id: int | None = None,
    occurred_on: str = "2026-03-31",
) -> int:
    with engine.begin() as conn:
        run = run_id if run_id is not None else conn.scalar(select(func.max(runs.c.id)))
        return int(
            conn.execute(
                insert(attendance_events).values(
                    district="d",
                    school_year=who.school_year,
                    student_sourced_id=who.student,
                    school_sourced_id=who.school,
                    trigger=trigger,
                    episode=episode,
                    as_of="2026-03-31",
                    occurred_on=occurred_on,
                    detail="{}",
                    run_id=run,
                    recorded_at=NOW,
                )
            ).inserted_primary_key[0]
        )


def numbered(engine: Engine, sub: str) -> list[tuple[int, int, str]]:
    n = subscription_notifications
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(n.c.event_number, n.c.attendance_event_id, n.c.status)
                .where(n.c.subscription_id == sub)
                .order_by(n.c.event_number)
            )
        ]


def test_events_are_numbered_in_order_once_and_only_for_consented_students(
    synced: tuple[Path, Path], engine: Engine
) -> None:
    settings = settings_of(synced)
    sub = subscribe(engine)
    mine = students(synced)
    theirs = {s.student for s in mine}
    stranger = next(s for s in students(synced, NORTHFIELD) if s.student not in theirs)
    first = event(engine, mine[0])
    event(engine, stranger)
    event(engine, mine[1], trigger="back-below")
    last = event(engine, mine[1])
    assert fan_out(engine, settings, NOW) == 2
    assert numbered(engine, sub) == [(1, first, "queued"), (2, last, "queued")]
    assert fan_out(engine, settings, NOW) == 0  # again: nothing new
    assert get_subscription(engine, sub).events == 2  # type: ignore[union-attr]


def test_a_subscription_starts_after_the_events_already_recorded(synced: tuple[Path, Path], engine: Engine) -> None:
    event(engine, students(synced)[0])
    sub = subscribe(engine)
    assert fan_out(engine, settings_of(synced), NOW) == 0
    assert numbered(engine, sub) == []


def test_a_trigger_the_recipient_does_not_want_is_never_numbered(synced: tuple[Path, Path], engine: Engine) -> None:
    base = settings_of(synced)
    settings = settings_of(
        synced, recipients={RIVERBEND: base.notify.triggers.model_copy(update={"into_chronic": False})}
    )
    sub = subscribe(engine)
    event(engine, students(synced)[0])
    assert fan_out(engine, settings, NOW) == 0
    assert numbered(engine, sub) == []


def test_a_consent_not_active_on_the_events_date_lets_nothing_out(synced: tuple[Path, Path], engine: Engine) -> None:
    sub = subscribe(engine)
    event(engine, students(synced)[0], occurred_on="2020-01-01")  # before any consent of the example
    assert fan_out(engine, settings_of(synced), NOW) == 0
    assert numbered(engine, sub) == []


def test_events_of_a_sync_still_running_wait_and_a_stopped_one_does_not_block(
    synced: tuple[Path, Path], engine: Engine
) -> None:
    settings = settings_of(synced)
    sub = subscribe(engine)
    with engine.begin() as conn:
        running = conn.execute(
            insert(runs).values(started_at=NOW, as_of="2026-04-01", export="x", changes=0)
        ).inserted_primary_key[0]
    held = event(engine, students(synced)[0], run_id=running)
    assert fan_out(engine, settings, NOW) == 0  # its served set may not be written yet
    with engine.begin() as conn:  # a later sync started: the first one stopped without finishing
        later = conn.execute(
            insert(runs).values(started_at=NOW, as_of="2026-04-02", export="x", changes=0, finished_at=NOW)
        ).inserted_primary_key[0]
    assert fan_out(engine, settings, NOW) == 1
    assert numbered(engine, sub) == [(1, held, "queued")]
    with engine.begin() as conn:
        conn.execute(runs.delete().where(runs.c.id.in_([running, later])))


def test_a_consent_revoked_after_the_fan_out_withholds_the_event_at_send_time(
    synced: tuple[Path, Path], engine: Engine
) -> None:
    settings = settings_of(synced)
    sub = subscribe(engine)
    who = students(synced)[2]
    event(engine, who)
    fan_out(engine, settings, NOW)
    with engine.begin() as conn:
        conn.execute(
            update(served_resources)
            .where(
                served_resources.c.recipient == RIVERBEND,
                served_resources.c.student == who.student,
                served_resources.c.resource_type == "Consent",
            )
            .values(permits=False)
        )
    assert next_delivery(engine, settings, sub, NOW) is None
    assert numbered(engine, sub)[0][2] == "withheld"
    with engine.begin() as conn:
        conn.execute(
            update(served_resources)
            .where(
                served_resources.c.recipient == RIVERBEND,
                served_resources.c.student == who.student,
                served_resources.c.resource_type == "Consent",
            )
            .values(permits=True)
        )


def test_a_delivered_event_is_a_disclosure_written_with_it(synced: tuple[Path, Path], engine: Engine) -> None:
    settings = settings_of(synced)
    sub = subscribe(engine)
    who = students(synced)[3]
    event(engine, who)
    fan_out(engine, settings, NOW)
    delivery = next_delivery(engine, settings, sub, NOW)
    assert delivery is not None and delivery.kind == "event-notification"
    record_outcome(engine, settings, delivery, True, "", NOW)
    assert numbered(engine, sub)[0][2] == "delivered"
    with engine.connect() as conn:
        row = conn.execute(select(disclosures).where(disclosures.c.destination == f"subscription:{sub}")).one()
    assert (row.student_sourced_id, row.recipient, row.channel, row.certainty) == (
        who.student,
        RIVERBEND,
        "notification",
        "confirmed",
    )
    assert f"Observation/{who.observation}/_history/" in row.disclosed
    assert row.consent_id
    assert next_delivery(engine, settings, sub, NOW) is None  # nothing more to send


def test_failures_wait_longer_each_time_then_the_subscription_is_in_error(
    synced: tuple[Path, Path], engine: Engine
) -> None:
    settings = settings_of(synced, initial_backoff_seconds=5, max_backoff_seconds=40, max_age_hours=1)
    assert [backoff(settings, n) for n in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 40, 40]
    sub = subscribe(engine)
    event(engine, students(synced)[4])
    event(engine, students(synced)[5])
    fan_out(engine, settings, NOW)
    at = NOW
    delivery = next_delivery(engine, settings, sub, at)
    assert delivery is not None and [n.event_number for n in delivery.notifications] == [1]
    record_outcome(engine, settings, delivery, False, "HTTP 503", at)
    assert next_delivery(engine, settings, sub, at + timedelta(seconds=4)) is None  # waiting: event 2 does not overtake
    again = next_delivery(engine, settings, sub, at + timedelta(seconds=5))
    assert again is not None and [n.event_number for n in again.notifications] == [1]  # the same number again
    record_outcome(engine, settings, again, False, "HTTP 503", at + timedelta(seconds=5))
    late = next_delivery(engine, settings, sub, at + timedelta(hours=2))
    assert late is not None
    record_outcome(engine, settings, late, False, "HTTP 503", at + timedelta(hours=2))
    after = get_subscription(engine, sub)
    assert after is not None and after.status == "error"
    assert "HTTP 503" in after.error and "1 hours" in after.error
    assert numbered(engine, sub)[0][2] == "dead"
    assert next_delivery(engine, settings, sub, at + timedelta(hours=3)) is None
