"""FhirRestDestination on answers a real server will not give on demand (respx routes, handed to the destination as
its httpx transport: nothing is patched globally): 429, 5xx, 409, 412, 400."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import respx

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Outcome, deliver_all
from sis2fhir.deliver.fhir_rest import FhirRestDestination, RecipientMisconfigured, RecipientUnreachable
from sis2fhir.deliver.smart_auth import NoAuth
from sis2fhir.link import PatientLinker
from tests.support.attendance_items import STATE_ID_SYSTEM, delivery_item, observation_identifier

BASE = "https://ehr.example.org/fhir"
CAPABILITIES = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [
        {
            "mode": "server",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "resource": [{"type": t, "conditionalUpdate": True} for t in ("Patient", "Observation", "Consent")],
        }
    ],
}
PATIENT_FOUND = {
    "resourceType": "Bundle",
    "type": "searchset",
    "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "match"}}],
}


def outcome(diagnostics: str, **issue: Any) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics, **issue}],
    }


def transaction_response(request: httpx.Request) -> httpx.Response:
    """What a server answers for a successful transaction: one response per entry, in order."""
    bundle = json.loads(request.content)
    entries = []
    for n, entry in enumerate(bundle["entry"]):
        rtype = entry["request"]["url"].split("?")[0]
        entries.append({"response": {"status": "201 Created", "location": f"{rtype}/r{n}/_history/1", "etag": 'W/"1"'}})
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": entries})


@contextmanager
def answers() -> Iterator[respx.MockRouter]:
    """Routes for the server's answers, used only by destinations given `transport(router)`."""
    yield respx.MockRouter(assert_all_called=False)


def transport(router: respx.MockRouter) -> httpx.MockTransport:
    return httpx.MockTransport(router.async_handler)


def server(mock: respx.MockRouter, capabilities: dict[str, Any] = CAPABILITIES) -> None:
    mock.get(f"{BASE}/metadata").respond(200, json=capabilities)
    mock.get(f"{BASE}/Patient").respond(200, json=PATIENT_FOUND)


def deliver(mock: respx.MockRouter, items: Sequence[DeliveryItem], **options: Any) -> list[DeliveryResult]:
    async def go() -> list[DeliveryResult]:
        dest = FhirRestDestination(
            BASE, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM), transport=transport(mock), **options
        )
        try:
            return await deliver_all(dest, items)
        finally:
            await dest.close()

    return asyncio.run(go())


def sent_bundles(route: respx.Route) -> list[dict[str, Any]]:
    return [json.loads(call.request.content) for call in route.calls]


def test_each_resource_is_a_conditional_update_on_its_identifier_with_the_linked_subject() -> None:
    item = delivery_item("S100")
    with answers() as mock:
        server(mock)
        post = mock.post(BASE).mock(side_effect=transaction_response)
        [result] = deliver(mock, [item])
    assert result.outcome is Outcome.DELIVERED
    assert result.disclosed == ["Observation/r0/_history/1", "Consent/r1/_history/1"]
    [bundle] = sent_bundles(post)
    assert bundle["type"] == "transaction"
    observation, consent = bundle["entry"]
    assert observation["request"] == {
        "method": "PUT",
        "url": f"Observation?identifier={observation_identifier('S100')}",
    }
    assert "id" not in observation["resource"]  # the server picks ids; a differing body id would be a 400
    assert observation["resource"]["subject"]["reference"] == "Patient/p1"
    assert consent["resource"]["patient"]["reference"] == "Patient/p1"
    assert item.resources[0]["subject"].get("reference") is None  # the caller's item is left as it was


@pytest.mark.parametrize(
    ("retry_after_header", "expected"),
    [
        (lambda: "120", lambda v: v == 120.0),
        # the date is made when the test runs (not when it is collected, minutes earlier in a full run)
        (lambda: email.utils.formatdate(time.time() + 3600, usegmt=True), lambda v: 3500 < v <= 3600),
    ],
    ids=["seconds", "http-date"],
)
def test_429_is_retried_when_the_server_says(
    retry_after_header: Callable[[], str], expected: Callable[[float], bool]
) -> None:
    retry_after = retry_after_header()
    with answers() as mock:
        server(mock)
        mock.post(BASE).respond(429, headers={"Retry-After": retry_after}, json=outcome("slow down"))
        [result] = deliver(mock, [delivery_item("S101")])
    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None and expected(result.retry_after)
    assert result.detail == "rate limited: 429: error: slow down"


def test_a_server_error_is_retried_and_its_operation_outcome_kept() -> None:
    with answers() as mock:
        server(mock)
        mock.post(BASE).respond(500, json=outcome("database unavailable"))
        [result] = deliver(mock, [delivery_item("S102")])
    assert result.outcome is Outcome.RETRY
    assert result.operation_outcome == outcome("database unavailable")
    assert "500" in result.detail


@pytest.mark.parametrize(
    ("failure", "outcome", "detail"),
    [
        # the Bundle went out and no answer came: the server may have committed it
        (httpx.ReadTimeout("read timed out"), Outcome.IN_DOUBT, "timed out after 30 s"),
        (httpx.RemoteProtocolError("server disconnected"), Outcome.IN_DOUBT, "before the transaction's answer"),
        # nothing left this side
        (httpx.ConnectError("connection refused"), Outcome.RETRY, "could not be sent (ConnectError)"),
    ],
)
def test_timeouts_and_connection_errors_are_retried(failure: Exception, outcome: Outcome, detail: str) -> None:
    with answers() as mock:
        server(mock)
        mock.post(BASE).mock(side_effect=failure)
        [result] = deliver(mock, [delivery_item("S103")])
    assert result.outcome is outcome
    assert detail in result.detail


def test_a_200_with_an_unreadable_body_is_in_doubt_not_counted_as_disclosed() -> None:
    with answers() as mock:
        server(mock)
        mock.post(BASE).respond(200, content=b"<html>proxy says hello</html>")
        [result] = deliver(mock, [delivery_item("S104")])
    assert result.outcome is Outcome.IN_DOUBT  # stored, perhaps: retried, and logged as possibly disclosed
    assert result.disclosed == []
    assert "no readable transaction-response" in result.detail


def test_a_409_is_sent_once_more_after_a_re_read() -> None:
    with answers() as mock:
        server(mock)
        reread = mock.get(url__startswith=f"{BASE}/Observation").respond(
            200, json={"resourceType": "Bundle", "total": 1}
        )
        mock.get(url__startswith=f"{BASE}/Consent").respond(200, json={"resourceType": "Bundle", "total": 1})
        post = mock.post(BASE).mock(
            side_effect=[httpx.Response(409, json=outcome("concurrent update")), transaction_response]
        )
        [result] = deliver(mock, [delivery_item("S105")])
    assert result.outcome is Outcome.DELIVERED
    assert post.call_count == 2
    assert reread.called


def test_a_412_twice_without_duplicates_is_left_for_a_later_retry() -> None:
    with answers() as mock:
        server(mock)
        mock.get(url__startswith=f"{BASE}/Observation").respond(200, json={"resourceType": "Bundle", "total": 1})
        mock.get(url__startswith=f"{BASE}/Consent").respond(200, json={"resourceType": "Bundle", "total": 1})
        post = mock.post(BASE).respond(412, json=outcome("version conflict"))
        [result] = deliver(mock, [delivery_item("S106")])
    assert result.outcome is Outcome.RETRY
    assert post.call_count == 2
    assert "again after a re-read" in result.detail


def test_a_412_saying_several_matches_is_dead_at_once_when_the_count_cannot_be_read() -> None:
    # HAPI's words (PreconditionFailedException), issue code "processing"; the _summary=count search fails
    said = 'Failed to UPDATE resource with match URL "Observation?identifier=x" because this search matched 2 resources'
    with answers() as mock:
        server(mock)
        mock.get(url__startswith=f"{BASE}/Observation").respond(500)
        mock.get(url__startswith=f"{BASE}/Consent").respond(500)
        post = mock.post(BASE).respond(412, json=outcome(said))
        [result] = deliver(mock, [delivery_item("S113")])
    assert result.outcome is Outcome.DEAD
    assert post.call_count == 1
    assert "matched 2 resources" in result.detail


def test_a_missing_endpoint_is_retried_with_the_url_named() -> None:
    with answers() as mock:
        server(mock)
        mock.post(BASE).respond(404, json=outcome("no such endpoint"))
        [result] = deliver(mock, [delivery_item("S107")])
    assert result.outcome is Outcome.RETRY
    assert f"{BASE} was not found" in result.detail


def test_a_400_naming_one_entry_kills_that_item_and_the_rest_is_resent() -> None:
    first, second = delivery_item("S108"), delivery_item("S109")
    with answers() as mock:
        server(mock)
        refused = outcome("Observation.status: unknown code", expression=["Bundle.entry[2].resource.status"])
        post = mock.post(BASE).mock(side_effect=[httpx.Response(400, json=refused), transaction_response])
        results = {r.key: r for r in deliver(mock, [first, second])}
    assert results[second.key].outcome is Outcome.DEAD  # entries 2 and 3 are the second item's
    assert results[second.key].operation_outcome == refused
    assert results[first.key].outcome is Outcome.DELIVERED
    resent = sent_bundles(post)[1]
    assert len(resent["entry"]) == 2
    assert resent["entry"][0]["request"]["url"].endswith(observation_identifier("S108"))


def test_an_item_without_business_identifier_is_dead_before_anything_is_sent() -> None:
    item = delivery_item("S110")
    del item.resources[1]["identifier"]
    with answers() as mock:
        server(mock)
        post = mock.post(BASE).mock(side_effect=transaction_response)
        [result] = deliver(mock, [item])
    assert result.outcome is Outcome.DEAD
    assert "without identifier" in result.detail
    assert not post.called


@pytest.mark.parametrize(
    ("capabilities", "message"),
    [
        ({**CAPABILITIES, "fhirVersion": "3.0.2"}, "speaks FHIR 3.0.2"),
        ({**CAPABILITIES, "rest": [{"mode": "server", "interaction": [{"code": "batch"}]}]}, "transaction"),
        ({"resourceType": "OperationOutcome"}, "not a CapabilityStatement"),
    ],
    ids=["stu3", "no-transaction", "not-capabilities"],
)
def test_a_server_that_cannot_take_our_transactions_is_reported(capabilities: dict[str, Any], message: str) -> None:
    with answers() as mock:
        server(mock, capabilities)
        post = mock.post(BASE)
        results = deliver(mock, [delivery_item("S111"), delivery_item("S112")])

        async def check() -> None:
            await FhirRestDestination(
                BASE, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM), transport=transport(mock)
            ).check()

        with pytest.raises(RecipientMisconfigured, match=message):
            asyncio.run(check())
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert all(message in r.detail for r in results)
    assert not post.called


def test_an_unreachable_server_is_not_called_misconfigured() -> None:
    with answers() as mock:
        mock.get(f"{BASE}/metadata").mock(side_effect=httpx.ConnectError("refused"))

        async def check() -> None:
            await FhirRestDestination(
                BASE, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM), transport=transport(mock)
            ).check()

        with pytest.raises(RecipientUnreachable, match="could not be reached"):
            asyncio.run(check())


def test_transactions_run_in_parallel_but_never_more_than_the_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def slow_server(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return transaction_response(request)

    items = [delivery_item(f"S2{n:02d}") for n in range(12)]
    with answers() as mock:
        server(mock)
        post = mock.post(BASE).mock(side_effect=slow_server)
        results = deliver(mock, items, bundle_size=2, concurrency=3)
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert post.call_count == 12
    assert 1 < peak <= 3
