"""Subscriptions (R5 Backport STU 1.1) as a subscriber sees them: `sis2fhir serve` a real process over a store a real
`sync` of the example district wrote, fhirpy creating Subscriptions with a real SMART token, a real subscriber on
loopback (tests/support/subscriber.py) receiving the notifications, and the Inferno Subscriptions rules
(tests/support/inferno_rules.py) checked on every Bundle it receives. Events are written into the store's
attendance_events table as a finished sync records them."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome
from sqlalchemy import create_engine, select, update

from sis2fhir.store.schema import disclosures, served_resources, subscription_notifications
from tests.support import inferno_rules, serve_process
from tests.support.served_district import HARBOR, RIVERSIDE, District
from tests.support.subscriber import Subscriber, event_numbers, focuses, notification_type, parameter
from tests.support.subscriptions import (
    BACKPORT,
    SCOPES,
    Student,
    notifying_district,
    record_event,
    served_students,
    subscription,
)

pytestmark = pytest.mark.integration
SECRET = "a-secret-the-subscriber-chose-1234"


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    with notifying_district(tmp_path_factory.mktemp("subs")) as d:
        yield d


def client(district: District, recipient: str = RIVERSIDE) -> SyncFHIRClient:
    return SyncFHIRClient(district.fhir, authorization=f"Bearer {district.token(recipient, SCOPES)}")


def headers(district: District, recipient: str = RIVERSIDE, scope: str = SCOPES) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {district.token(recipient, scope)}",
        "Accept": "application/fhir+json",
        "Content-Type": "application/fhir+json",
    }


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    s = Subscriber().start()
    yield s
    s.stop()


def only_at(district: District, holder: str, other: str) -> list[Student]:
    """Students served to `holder` and not to `other`."""
    theirs = {s.student for s in served_students(district.out, other)}
    return [s for s in served_students(district.out, holder) if s.student not in theirs]


def subscribe(district: District, resource: dict[str, Any], recipient: str = RIVERSIDE) -> dict[str, Any]:
    """Create it with fhirpy; the created resource as answered."""
    created = client(district, recipient).resource("Subscription", **resource)
    created.save()
    return dict(created.serialize())


def active(district: District, sub: dict[str, Any], subscriber: Subscriber) -> None:
    subscriber.wait_for(lambda s: len(s.bundles("handshake")) >= 1)
    got = httpx.get(f"{district.fhir}/Subscription/{sub['id']}", headers=headers(district)).json()
    assert got["status"] == "active"


def conformant(subscriber: Subscriber, sub: dict[str, Any]) -> None:
    for received in subscriber.received:
        assert inferno_rules.problems(received, sub) == []


def unsubscribe(district: District, sub: dict[str, Any]) -> None:
    assert httpx.delete(f"{district.fhir}/Subscription/{sub['id']}", headers=headers(district)).status_code == 204


def test_metadata_advertises_the_backport_profile_the_topics_and_the_operations(district: District) -> None:
    rest = httpx.get(f"{district.fhir}/metadata").json()["rest"][0]
    resource = next(r for r in rest["resource"] if r["type"] == "Subscription")
    assert (
        "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
        in (resource["supportedProfile"])
    )
    topics = {e["valueCanonical"] for e in resource["extension"] if e["url"].endswith("subscriptiontopic-canonical")}
    assert "http://sis2fhir.org/fhir/SubscriptionTopic/into-chronic" in topics
    assert {o["name"] for o in resource["operation"]} == {"status", "events"}
    bundle = httpx.get(f"{district.fhir}/Basic", headers=headers(district)).json()
    urls = {
        e["valueUri"]
        for entry in bundle["entry"]
        for e in entry["resource"]["extension"]
        if e["url"].endswith("SubscriptionTopic.url")
    }
    assert urls == topics


def test_a_subscription_made_with_fhirpy_is_requested_then_handshaken_then_active(
    district: District, subscriber: Subscriber
) -> None:
    sub = subscribe(district, subscription(subscriber.url, headers=("Authorization: Bearer subscriber-token",)))
    assert sub["status"] == "requested"
    active(district, sub, subscriber)
    handshake = subscriber.bundles("handshake")[0]
    assert parameter(handshake, "status") == "requested"
    assert parameter(handshake, "events-since-subscription-start") == "0"
    assert subscriber.received[0].header("Authorization") == "Bearer subscriber-token"
    conformant(subscriber, sub)
    status = httpx.get(f"{district.fhir}/Subscription/{sub['id']}/$status", headers=headers(district)).json()
    assert status["type"] == "searchset"
    params = status["entry"][0]["resource"]
    ref = next(p["valueReference"]["reference"] for p in params["parameter"] if p["name"] == "subscription")
    assert ref.endswith(f"Subscription/{sub['id']}")
    unsubscribe(district, sub)


def test_a_handshake_refused_puts_the_subscription_in_error_with_the_reason(
    district: District, subscriber: Subscriber
) -> None:
    subscriber.status = 500
    sub = subscribe(district, subscription(subscriber.url))
    subscriber.wait_for(lambda s: len(s.received) >= 1)

    def in_error() -> dict[str, Any]:
        return httpx.get(f"{district.fhir}/Subscription/{sub['id']}", headers=headers(district)).json()

    subscriber.wait_for(lambda s: in_error()["status"] == "error")
    assert "HTTP 500" in in_error()["error"]
    status = httpx.get(f"{district.fhir}/Subscription/{sub['id']}/$status", headers=headers(district)).json()
    params = status["entry"][0]["resource"]["parameter"]
    assert any(p["name"] == "error" and "HTTP 500" in p["valueCodeableConcept"]["text"] for p in params)
    unsubscribe(district, sub)


SIGNING = "http://sis2fhir.org/fhir/StructureDefinition/notification-signing-secret"


def filtered(text: str) -> dict[str, Any]:
    return {"_criteria": {"extension": [{"url": BACKPORT + "backport-filter-criteria", "valueString": text}]}}


BAD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [  # (what, top-level changes, channel changes)
    ("channel type", {}, {"type": "websocket"}),
    ("payload", {}, {"payload": "application/xml"}),
    ("content", {}, {"_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": "all"}]}}),
    ("topic", {"criteria": "http://sis2fhir.org/fhir/SubscriptionTopic/no-such-topic"}, {}),
    ("filter key", filtered("Observation?code=x"), {}),
    ("filter resource", filtered("Encounter?patient=Patient/x"), {}),
    ("filter patient", filtered("patient=Patient/not-served-here"), {}),
    ("filter school", filtered("school=no-such-school"), {}),
    ("plain http", {}, {"endpoint": "http://example.com/hook"}),
    ("private address", {}, {"endpoint": "https://10.1.2.3/hook"}),
    ("loopback https", {}, {"endpoint": "https://127.0.0.1:9/hook"}),
    ("prefix look-alike", {}, {"endpoint": "http://127.0.0.1.example.com/hook"}),
    ("credentials in URL", {}, {"endpoint": "http://u:p@127.0.0.1:9/hook"}),
    ("header", {}, {"header": ["no colon here"]}),
    ("heartbeat", {}, {"extension": [{"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": 0}]}),
    ("short secret", {}, {"extension": [{"url": SIGNING, "valueString": "short"}]}),
]


@pytest.mark.parametrize(("what", "top", "channel"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_field_is_refused_with_an_operation_outcome(
    district: District, what: str, top: dict[str, Any], channel: dict[str, Any]
) -> None:
    resource = subscription("http://127.0.0.1:9/hook")
    resource.update(top)
    resource["channel"].update(channel)
    with pytest.raises(OperationOutcome):
        client(district).resource("Subscription", **resource).save()
    answer = httpx.post(f"{district.fhir}/Subscription", json=resource, headers=headers(district))
    assert answer.status_code in (400, 422), what
    assert answer.json()["resourceType"] == "OperationOutcome"
    listed = httpx.get(f"{district.fhir}/Subscription", headers=headers(district)).json()
    assert all(e["resource"]["channel"]["endpoint"] != "http://127.0.0.1:9/hook" for e in listed.get("entry", []))


def test_scopes_and_ownership(district: District, subscriber: Subscriber) -> None:
    no_scope = headers(district, scope="system/Observation.rs")
    answer = httpx.post(f"{district.fhir}/Subscription", json=subscription(subscriber.url), headers=no_scope)
    assert answer.status_code == 403
    read_only = headers(district, scope="system/Subscription.rs")
    assert (
        httpx.post(f"{district.fhir}/Subscription", json=subscription(subscriber.url), headers=read_only).status_code
        == 403
    )
    sub = subscribe(district, subscription(subscriber.url))
    other = headers(district, HARBOR)
    assert httpx.get(f"{district.fhir}/Subscription/{sub['id']}", headers=other).status_code == 404
    assert httpx.get(f"{district.fhir}/Subscription/{sub['id']}/$status", headers=other).status_code == 404
    assert httpx.delete(f"{district.fhir}/Subscription/{sub['id']}", headers=other).status_code == 404
    theirs = httpx.get(f"{district.fhir}/Subscription", headers=other).json()
    assert sub["id"] not in {e["resource"]["id"] for e in theirs.get("entry", [])}
    assert httpx.get(f"{district.fhir}/Subscription/{sub['id']}", headers=headers(district)).status_code == 200
    unsubscribe(district, sub)


def test_an_event_goes_out_once_for_a_consented_student_and_not_for_others(
    district: District, subscriber: Subscriber
) -> None:
    sub = subscribe(district, subscription(subscriber.url))
    active(district, sub, subscriber)
    mine = only_at(district, RIVERSIDE, HARBOR)[0]
    not_mine = only_at(district, HARBOR, RIVERSIDE)[0]
    record_event(district.store_url, not_mine, episode="t-events")  # harbor's student: nothing for riverside
    record_event(district.store_url, mine, trigger="back-below", episode="t-events")  # another topic
    record_event(district.store_url, mine, episode="t-events")
    subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 1)
    last = record_event(district.store_url, only_at(district, RIVERSIDE, HARBOR)[1], episode="t-events")
    subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 2)
    events = subscriber.bundles("event-notification")
    assert [event_numbers(b) for b in events] == [[1], [2]]
    assert focuses(events[0]) == [f"{district.fhir}/Observation/{mine.observation}"]
    context = [
        part["valueReference"]["reference"]
        for p in events[0]["entry"][0]["resource"]["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "additional-context"
    ]
    assert context == [f"{district.fhir}/Patient/{mine.patient}"]
    assert parameter(events[1], "events-since-subscription-start") == "2"
    conformant(subscriber, sub)
    # the disclosure row is committed with the delivery's status once the endpoint has answered, so just after the
    # subscriber holds the Bundle it may not be visible yet: read the log until it settles
    engine = create_engine(district.store_url)
    wanted = sorted([(mine.student, RIVERSIDE), (only_at(district, RIVERSIDE, HARBOR)[1].student, RIVERSIDE)])
    deadline = time.monotonic() + 20
    while True:
        with engine.connect() as conn:
            logged = sorted(
                tuple(row)
                for row in conn.execute(
                    select(disclosures.c.student_sourced_id, disclosures.c.recipient).where(
                        disclosures.c.channel == "notification",
                        disclosures.c.destination == f"subscription:{sub['id']}",
                    )
                )
            )
        if logged == wanted or len(logged) > len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    engine.dispose()
    assert logged == wanted
    assert last > 0
    unsubscribe(district, sub)


@pytest.mark.parametrize("content", ["empty", "full-resource"])
def test_every_payload_content_follows_the_inferno_rules(
    district: District, subscriber: Subscriber, content: str
) -> None:
    sub = subscribe(district, subscription(subscriber.url, content=content))
    active(district, sub, subscriber)
    record_event(district.store_url, only_at(district, RIVERSIDE, HARBOR)[2], episode=f"t-{content}")
    subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 1)
    conformant(subscriber, sub)
    bundle = subscriber.bundles("event-notification")[0]
    if content == "empty":
        assert len(bundle["entry"]) == 1
    else:
        types = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert types == ["Parameters", "Observation", "Patient"]
    unsubscribe(district, sub)


def test_a_patient_filter_narrows_the_events(district: District, subscriber: Subscriber) -> None:
    students = only_at(district, RIVERSIDE, HARBOR)
    wanted = students[3]
    sub = subscribe(district, subscription(subscriber.url, filters=(f"Observation?patient=Patient/{wanted.patient}",)))
    active(district, sub, subscriber)
    record_event(district.store_url, students[4], episode="t-filter")
    record_event(district.store_url, wanted, episode="t-filter")
    subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 1)
    assert focuses(subscriber.bundles("event-notification")[0]) == [f"{district.fhir}/Observation/{wanted.observation}"]
    record_event(district.store_url, wanted, episode="t-filter-2")
    subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 2)
    assert [event_numbers(b) for b in subscriber.bundles("event-notification")] == [[1], [2]]
    unsubscribe(district, sub)


def test_a_subscriber_down_for_a_while_gets_every_event_in_order_and_a_revoked_consent_stops_one(
    district: District, subscriber: Subscriber
) -> None:
    sub = subscribe(
        district,
        subscription(subscriber.url, extensions=({"url": BACKPORT + "backport-max-count", "valuePositiveInt": 2},)),
    )
    active(district, sub, subscriber)
    subscriber.stop()
    students = only_at(district, RIVERSIDE, HARBOR)[5:10]
    for who in students:
        record_event(district.store_url, who, episode="t-down")
    engine = create_engine(district.store_url)
    n = subscription_notifications

    def tried() -> bool:
        with engine.connect() as conn:
            return bool(conn.scalar(select(n.c.id).where(n.c.subscription_id == sub["id"], n.c.attempts >= 2).limit(1)))

    subscriber.wait_for(lambda s: tried())  # retried while down
    revoked = students[2]  # its consent revoked before the subscriber returns: what a sync of the revocation does
    with engine.begin() as conn:
        conn.execute(
            update(served_resources)
            .where(
                served_resources.c.recipient == RIVERSIDE,
                served_resources.c.student == revoked.student,
                served_resources.c.resource_type == "Consent",
            )
            .values(permits=False)
        )
    subscriber.start()
    subscriber.wait_for(lambda s: sum(len(event_numbers(b)) for b in s.bundles("event-notification")) >= 4)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(n.c.event_number, n.c.status).where(n.c.subscription_id == sub["id"])).all()
        )
    engine.dispose()
    numbers = [x for b in subscriber.bundles("event-notification") for x in event_numbers(b)]
    assert numbers == [1, 2, 4, 5]  # in order; 3 withheld (a gap the subscriber can see)
    assert statuses[3] == "withheld"
    got = {f for b in subscriber.bundles("event-notification") for f in focuses(b)}
    assert f"{district.fhir}/Observation/{revoked.observation}" not in got
    conformant(subscriber, sub)
    unsubscribe(district, sub)


def test_heartbeats_and_the_signature(district: District, subscriber: Subscriber) -> None:
    extensions = (
        {"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": 1},
        {"url": SIGNING, "valueString": SECRET},
    )
    resource = subscription(subscriber.url + "?key=token-in-the-query", extensions=extensions)
    sub = subscribe(district, resource)
    assert SECRET not in str(sub)
    subscriber.wait_for(lambda s: len(s.bundles("heartbeat")) >= 1)
    conformant(subscriber, sub)
    for received in subscriber.received:
        stamp, mac = (part.split("=", 1)[1] for part in (received.header("X-Sis2fhir-Signature") or "").split(","))
        expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(mac, expected)
    assert SECRET not in district.served.log_text()
    assert "token-in-the-query" not in district.served.log_text()  # nor the endpoint's query
    assert SECRET not in httpx.get(f"{district.fhir}/Subscription/{sub['id']}", headers=headers(district)).text
    unsubscribe(district, sub)


def test_events_operation_answers_the_numbered_events(district: District, subscriber: Subscriber) -> None:
    sub = subscribe(district, subscription(subscriber.url))
    active(district, sub, subscriber)
    students = only_at(district, RIVERSIDE, HARBOR)[10:12]
    for who in students:
        record_event(district.store_url, who, episode="t-ops")
    subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 2)
    answer = httpx.get(
        f"{district.fhir}/Subscription/{sub['id']}/$events",
        params={"eventsSinceNumber": "2", "eventsUntilNumber": "2"},
        headers=headers(district),
    ).json()
    assert answer["type"] == "history"
    assert parameter(answer, "type") == "query-event"
    assert event_numbers(answer) == [2]
    assert notification_type(answer) == "query-event"
    unsubscribe(district, sub)


def test_no_event_is_sent_twice_across_restarts_of_serve(tmp_path: Any) -> None:
    subscriber = Subscriber().start()
    try:
        with notifying_district(tmp_path) as district:
            sub = subscribe(district, subscription(subscriber.url))
            active(district, sub, subscriber)
            students = only_at(district, RIVERSIDE, HARBOR)
            record_event(district.store_url, students[0], episode="t-restart")
            subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 1)
            config, port = district.config, int(district.url.rsplit(":", 1)[1])
        with serve_process.serving(config, port, tmp_path / "serve-2.log") as again:
            assert again.url == district.url
            record_event(district.store_url, students[1], episode="t-restart")
            subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 2)
            record_event(district.store_url, students[2], episode="t-restart")
            subscriber.wait_for(lambda s: len(s.bundles("event-notification")) >= 3)
        numbers = [x for b in subscriber.bundles("event-notification") for x in event_numbers(b)]
        assert numbers == [1, 2, 3]
        assert len(subscriber.bundles("handshake")) == 1
    finally:
        subscriber.stop()
