"""Transactions strict servers take, at the real server (sekmet-fhir): a `fullUrl` on every entry; the
CapabilityStatement must state conditional update for what we send and take logical references where it states a
referencePolicy (else exit 1 with advice); several resources under one identifier (412 multiple matches) make a
dead letter at once with the server's message, not 72 hours of retries."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Outcome, deliver_all
from sis2fhir.deliver.fhir_rest import FhirRestDestination, RecipientMisconfigured
from sis2fhir.deliver.smart_auth import NoAuth
from sis2fhir.link import PatientLinker
from sis2fhir.store import open_store
from sis2fhir.store.schema import outbox
from tests.end_to_end.test_sync_fhir import EXAMPLE, seed_patients, write_config
from tests.support.attendance_items import STATE_ID_SYSTEM, delivery_item, new_state_id

pytestmark = pytest.mark.integration
runner = CliRunner()


class Recording(httpx.AsyncBaseTransport):
    """The real network underneath; keeps every transaction Bundle posted."""

    def __init__(self) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.bundles: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.rstrip("/").endswith("/fhir"):
            self.bundles.append(json.loads(await request.aread()))
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


def seed_patient(base: str, state_id: str) -> str:
    patient = {"resourceType": "Patient", "identifier": [{"system": STATE_ID_SYSTEM, "value": state_id}]}
    response = httpx.post(f"{base}/Patient", json=patient, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201
    return str(response.json()["id"])


def deliver(
    base: str, items: Sequence[DeliveryItem], transport: httpx.AsyncBaseTransport | None = None, **options: Any
) -> dict[str, DeliveryResult]:
    destination = FhirRestDestination(
        base, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM), transport=transport, **options
    )

    async def go() -> list[DeliveryResult]:
        try:
            return await deliver_all(destination, items)
        finally:
            await destination.close()

    return {r.key: r for r in asyncio.run(go())}


# -- fullUrl ----------------------------------------------------------------------------------------------------


def test_every_entry_sent_has_a_stable_urn_uuid_full_url(fhir_server: str) -> None:
    students = [new_state_id() for _ in range(3)]
    for s in students:
        seed_patient(fhir_server, s)
    items = [delivery_item(s) for s in students]
    first, again = Recording(), Recording()

    delivered = deliver(fhir_server, items, first, bundle_size=4)
    deliver(fhir_server, items, again, bundle_size=4)

    assert {r.outcome for r in delivered.values()} == {Outcome.DELIVERED}
    entries = [e for b in first.bundles for e in b["entry"]]
    assert len(entries) == 6
    urls = [e["fullUrl"] for e in entries]
    assert all(u.startswith("urn:uuid:") and uuid.UUID(u.removeprefix("urn:uuid:")) for u in urls)
    assert len(set(urls)) == len(urls)  # one per resource
    assert urls == [e["fullUrl"] for b in again.bundles for e in b["entry"]]  # a resend names them the same


# -- the CapabilityStatement ------------------------------------------------------------------------------------


def sekmet_capabilities(base: str) -> dict[str, Any]:
    body = httpx.get(f"{base}/metadata").json()
    assert body["resourceType"] == "CapabilityStatement"
    return dict(body)


def changed(capabilities: dict[str, Any], resource_type: str, **element: Any) -> dict[str, Any]:
    """sekmet's own statement with one resource entry changed (None: the element removed)."""
    body = copy.deepcopy(capabilities)
    for rest in body["rest"]:
        for resource in rest.get("resource") or []:
            if resource["type"] == resource_type:
                for name, value in element.items():
                    if value is None:
                        resource.pop(name, None)
                    else:
                        resource[name] = value
    return body


@contextmanager
def serving_metadata(capabilities: dict[str, Any]) -> Iterator[str]:
    """A real HTTP server on loopback answering GET /fhir/metadata with `capabilities` (and 404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(capabilities).encode() if self.path.startswith("/fhir/metadata") else b"{}"
            self.send_response(200 if self.path.startswith("/fhir/metadata") else 404)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()


def test_sekmet_states_what_we_need(fhir_server: str) -> None:
    async def check() -> dict[str, Any] | None:
        destination = FhirRestDestination(fhir_server, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM))
        try:
            await destination.check()
            return destination.capabilities
        finally:
            await destination.close()

    assert asyncio.run(check()) is not None


@pytest.mark.parametrize(
    ("resource_type", "element", "says"),
    [
        ("Consent", {"conditionalUpdate": None}, "conditionalUpdate: true for Consent"),
        ("Observation", {"conditionalUpdate": False}, "conditionalUpdate: true for Observation"),
        ("Observation", {"referencePolicy": ["literal", "local"]}, "referencePolicy for Observation"),
    ],
    ids=["consent-without-conditional-update", "observation-conditional-update-false", "no-logical-references"],
)
def test_a_server_without_what_we_need_stops_the_run_with_exit_1_and_advice(
    fhir_server: str, tmp_path: Path, resource_type: str, element: dict[str, Any], says: str
) -> None:
    capabilities = changed(sekmet_capabilities(fhir_server), resource_type, **element)
    with serving_metadata(capabilities) as base:

        async def check() -> None:
            await FhirRestDestination(base, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM)).check()

        with pytest.raises(RecipientMisconfigured, match=says):
            asyncio.run(check())

        config = write_config(tmp_path / "sis2fhir.yaml", f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}")
        res = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", "2026-03-31", "--config", str(config),
                                  "--store", f"sqlite:///{tmp_path / 'state.sqlite'}", "--report",
                                  str(tmp_path / "rows.csv"), "--destination", base])  # fmt: skip
    output = " ".join(res.output.split())
    assert res.exit_code == 1, output
    assert says in output and "ask the recipient" in output and "Nothing was sent" in output


def test_a_statement_without_reference_policy_is_taken(fhir_server: str) -> None:
    capabilities = changed(sekmet_capabilities(fhir_server), "Observation", referencePolicy=None)
    with serving_metadata(capabilities) as base:

        async def check() -> None:
            await FhirRestDestination(base, NoAuth(), linker=PatientLinker(STATE_ID_SYSTEM)).check()

        asyncio.run(check())


# -- 412 multiple matches ---------------------------------------------------------------------------------------


def test_an_identifier_two_resources_carry_is_dead_at_once_with_the_servers_message(fhir_server: str) -> None:
    twice, fine = new_state_id(), new_state_id()
    for s in (twice, fine):
        seed_patient(fhir_server, s)
    duplicated = delivery_item(twice)
    for _ in range(2):  # someone else's import left two Observations under our identifier
        observation = {**copy.deepcopy(duplicated.resources[0]), "subject": {"display": "elsewhere"}}
        r = httpx.post(
            f"{fhir_server}/Observation", json=observation, headers={"Content-Type": "application/fhir+json"}
        )
        assert r.status_code == 201, r.text[:300]
    recording = Recording()

    results = deliver(fhir_server, [duplicated, delivery_item(fine)], recording)

    dead = results[duplicated.key]
    assert dead.outcome is Outcome.DEAD
    # sekmet: 412, issue code multiple-matches, "Entry 0 conditional update: criteria matched 2 resources"
    assert "412" in dead.detail and "matched 2 resources" in dead.detail
    assert "remove the duplicates" in dead.detail
    assert dead.operation_outcome is not None
    assert results[delivery_item(fine).key].outcome is Outcome.DELIVERED  # the other item went again, alone
    assert len(recording.bundles) == 2


def test_the_sync_puts_it_in_the_dead_letters_after_one_attempt(fhir_server: str, tmp_path: Path) -> None:
    namespace = f"urn:sis2fhir:test:{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path / "sis2fhir.yaml", namespace)
    seed_patients(fhir_server, f"{namespace}:state-student-id")
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    args = ["sync", str(EXAMPLE), "--as-of", "2026-03-31", "--config", str(config), "--store", store,
            "--report", str(tmp_path / "rows.csv"), "--destination", fhir_server]  # fmt: skip
    ref = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", "2026-03-31", "--config", str(config),
                              "--out", str(tmp_path / "ref")])  # fmt: skip
    assert ref.exit_code == 0, ref.output
    observation = json.loads(next((tmp_path / "ref").glob("*/Observation.ndjson")).read_text().splitlines()[0])
    observation.pop("id")
    observation["subject"] = {"display": "elsewhere"}
    for _ in range(2):
        r = httpx.post(
            f"{fhir_server}/Observation", json=observation, headers={"Content-Type": "application/fhir+json"}
        )
        assert r.status_code == 201, r.text[:300]

    res = runner.invoke(app, args)

    assert res.exit_code == 4, res.output
    with open_store(store).connect() as conn:
        dead = conn.execute(select(outbox).where(outbox.c.status == "dead")).all()
        queued = conn.execute(select(outbox).where(outbox.c.status == "queued")).all()
    assert len(dead) == 1 and queued == []
    assert dead[0].attempts == 1
    assert "matched 2 resources" in dead[0].last_error
    listed = runner.invoke(app, ["outbox", "dead", "--store", store])
    assert "matched 2 resources" in " ".join(listed.output.split())


def test_two_recipients_on_one_server_get_one_resource_not_two(fhir_server: str) -> None:
    # the same student's Observation for two recipients that share a server: the same conditional URL twice
    state_id = new_state_id()
    patient = seed_patient(fhir_server, state_id)
    first = delivery_item(state_id)
    second = dataclasses.replace(first, key="second-recipient-" + first.key[:16], recipient="1999999992")
    recording = Recording()

    results = deliver(fhir_server, [first, second], recording, bundle_size=50)

    assert {r.outcome for r in results.values()} == {Outcome.DELIVERED}
    for bundle in recording.bundles:  # never one resource twice in a transaction (R4; bdl-7)
        urls = [e["fullUrl"] for e in bundle["entry"]]
        assert len(urls) == len(set(urls))
    held = httpx.get(f"{fhir_server}/Observation", params={"subject": f"Patient/{patient}"}).json()
    assert held["total"] == 1
