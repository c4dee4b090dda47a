"""Bulk Data 2.0 $export against `sis2fhir serve` as a real process on loopback: the example district synced with
`sync --out` into the server's store, real tokens through the token flow (keys made here), real httpx. The files a
client downloads are compared with the `sync --out` folder of its recipient, line for line as sets per type."""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support import network, paths, serve_process, smart
from tests.support.postgres import new_database
from tests.support.served_district import AS_OF, HARBOR, RIVERSIDE, served_district

pytestmark = pytest.mark.integration

SCOPES = "system/Patient.rs system/Observation.rs system/Consent.rs system/Organization.rs"
CLIENTS = {"riverside-ehr": (RIVERSIDE, SCOPES), "harbor-chc": (HARBOR, SCOPES)}
OBSERVATIONS_ONLY = "riverside-obs"  # a second client of Riverside whose scopes grant Observation only
KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
TYPES = ("Patient", "Organization", "Observation", "Consent")


@dataclass
class Env:
    tmp: Path
    url: str
    config: Path
    store: Path
    out: Path
    keys: dict[str, smart.ClientKeys]
    port: int

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def auth(self, client: str = "riverside-ehr", scope: str = SCOPES, url: str | None = None) -> dict[str, str]:
        token = smart.get_token(url or self.url, client, self.keys[client], scope)
        return {"Authorization": f"Bearer {token}"}


def write_config(tmp: Path, port: int, keys: dict[str, smart.ClientKeys], store: Path, **api: Any) -> Path:
    clients = [smart.api_client_config(c, r, keys[c], s) for c, (r, s) in CLIENTS.items()]
    clients.append(
        smart.api_client_config(OBSERVATIONS_ONLY, RIVERSIDE, keys[OBSERVATIONS_ONLY], "system/Observation.rs")
    )
    return network.write_config(
        tmp / f"sis2fhir-{port}.yaml",
        store_url=f"sqlite:///{store}",
        api={"base_url": f"http://127.0.0.1:{port}", "clients": clients, **api},
    )


def sync(config: Path, out: Path, export: Path = paths.EXAMPLE) -> None:
    done = subprocess.run(
        [serve_process.SIS2FHIR, "sync", str(export), "--as-of", AS_OF, "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: the example has rows it rejects on purpose


@pytest.fixture(scope="module")
def keys() -> dict[str, smart.ClientKeys]:
    return {c: smart.make_client_keys("ES384") for c in [*CLIENTS, OBSERVATIONS_ONLY]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, smart.ClientKeys]) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("bulk")
    port = serve_process.free_port()
    store = tmp / "state.sqlite"
    config = write_config(tmp, port, keys, store, export_dir=str(tmp / "exports"))
    sync(config, tmp / "out")
    with serve_process.serving(config, port, tmp / "serve.log") as served:
        yield Env(tmp, served.url, config, store, tmp / "out", keys, port)


def kick_off(env: Env, path: str = "$export", headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    return httpx.get(f"{env.fhir}/{path}", params=params, headers={**KICK_OFF, **(headers or env.auth())}, timeout=30)


def manifest_of(status_url: str, auth: dict[str, str]) -> dict[str, Any]:
    """Poll until complete: every answer before is 202 with X-Progress."""
    for _ in range(600):
        status = httpx.get(status_url, headers=auth, timeout=30)
        if status.status_code == 200:
            assert status.headers["content-type"].startswith("application/json")
            found: dict[str, Any] = status.json()
            return found
        assert status.status_code == 202, status.text
        assert status.headers["x-progress"]
        time.sleep(0.1)
    raise AssertionError("the export did not complete")


def export(env: Env, path: str = "$export", auth: dict[str, str] | None = None, **params: str) -> dict[str, Any]:
    auth = auth or env.auth()
    kicked = kick_off(env, path, auth, **params)
    assert kicked.status_code == 202, kicked.text
    return manifest_of(kicked.headers["content-location"], auth)


def download(manifest: dict[str, Any], auth: dict[str, str]) -> dict[str, set[bytes]]:
    """The manifest's files as sets of lines per type (each file checked: its type, its count, its media type)."""
    found: dict[str, set[bytes]] = {}
    for out in manifest["output"]:
        got = httpx.get(out["url"], headers=auth, timeout=30)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"].startswith("application/fhir+ndjson")
        lines = got.content.splitlines()
        assert len(lines) == out["count"]
        assert {orjson.loads(line)["resourceType"] for line in lines} == {out["type"]}
        found.setdefault(out["type"], set()).update(lines)
    return found


def folder(out: Path, recipient: str) -> dict[str, set[bytes]]:
    """What `sync --out` wrote for a recipient, as sets of lines per type."""
    found: dict[str, set[bytes]] = {}
    for rtype in TYPES:
        path = out / recipient / f"{rtype}.ndjson"
        if path.exists():
            found[rtype] = {line for line in path.read_bytes().splitlines() if line.strip()}
    return found


def test_the_files_equal_what_sync_out_wrote_for_the_clients_recipient(env: Env) -> None:
    auth = env.auth()
    manifest = export(env, auth=auth)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"] == f"{env.fhir}/$export"
    assert manifest["transactionTime"].endswith("Z")
    assert manifest["error"] == []
    assert [o["type"] for o in manifest["output"]] == list(TYPES)
    assert all(o["url"].startswith(f"{env.fhir}/$export-file/") for o in manifest["output"])
    assert download(manifest, auth) == folder(env.out, RIVERSIDE)
    assert download(export(env, auth=env.auth("harbor-chc")), env.auth("harbor-chc")) == folder(env.out, HARBOR)


def test_the_group_is_the_recipients_consented_students_and_its_export_equals_the_system_export(env: Env) -> None:
    auth = env.auth()
    found = httpx.get(f"{env.fhir}/Group", headers=auth).json()
    assert found["resourceType"] == "Bundle" and found["total"] == 1
    group = found["entry"][0]["resource"]
    assert (group["type"], group["actual"]) == ("person", True)
    patients = {orjson.loads(line)["id"] for line in folder(env.out, RIVERSIDE)["Patient"]}
    assert {m["entity"]["reference"] for m in group["member"]} == {f"Patient/{p}" for p in patients}
    read = httpx.get(f"{env.fhir}/Group/{group['id']}", headers=auth).json()
    assert (read["id"], read["member"]) == (group["id"], group["member"])
    harbor = httpx.get(f"{env.fhir}/Group", headers=env.auth("harbor-chc")).json()["entry"][0]["resource"]
    assert harbor["id"] != group["id"]
    assert httpx.get(f"{env.fhir}/Group/{harbor['id']}", headers=auth).status_code == 404  # not Riverside's

    by_group = download(export(env, f"Group/{group['id']}/$export", auth), auth)
    assert by_group == download(export(env, auth=auth), auth) == folder(env.out, RIVERSIDE)
    assert kick_off(env, f"Group/{harbor['id']}/$export", auth).status_code == 404


def test_type_filters_and_refuses_what_is_not_exported(env: Env) -> None:
    auth = env.auth()
    manifest = export(env, auth=auth, _type="Observation,Consent")
    assert [o["type"] for o in manifest["output"]] == ["Observation", "Consent"]
    want = folder(env.out, RIVERSIDE)
    assert download(manifest, auth) == {t: want[t] for t in ("Observation", "Consent")}
    for bad in ("Encounter", "Observation,", "patient"):
        refused = kick_off(env, headers=auth, _type=bad)
        assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome", bad
    assert kick_off(env, headers=auth, _outputFormat="ndjson").status_code == 202
    assert kick_off(env, headers=auth, _outputFormat="application/fhir+json").status_code == 400
    assert kick_off(env, headers=auth, _since="2026-03-31").status_code == 400  # an instant needs a time and zone
    assert kick_off(env, headers=auth, _typeFilter="Observation?code=x").status_code == 400
    lenient = {**auth, "Prefer": "respond-async, handling=lenient"}
    assert kick_off(env, headers=lenient, _typeFilter="Observation?code=x").status_code == 202


def test_a_kick_off_needs_prefer_respond_async_and_an_accept_of_fhir_json(env: Env) -> None:
    auth = env.auth()
    for headers in (
        {**auth, "Accept": "application/fhir+json"},
        {**auth, "Prefer": "respond-async", "Accept": "text/csv"},
    ):
        refused = httpx.get(f"{env.fhir}/$export", headers=headers)
        assert refused.status_code == 400
        assert refused.json()["resourceType"] == "OperationOutcome"


def test_scopes_decide_the_types(env: Env) -> None:
    auth = env.auth(OBSERVATIONS_ONLY, "system/Observation.rs")
    manifest = export(env, auth=auth)  # no _type: what the token grants
    assert [o["type"] for o in manifest["output"]] == ["Observation"]
    assert download(manifest, auth) == {"Observation": folder(env.out, RIVERSIDE)["Observation"]}
    refused = kick_off(env, headers=auth, _type="Patient,Observation")
    assert refused.status_code == 403 and refused.json()["issue"][0]["code"] == "forbidden"


def test_without_a_token_nothing_answers(env: Env) -> None:
    auth = env.auth()
    kicked = kick_off(env, headers=auth)
    status_url = kicked.headers["content-location"]
    manifest = manifest_of(status_url, auth)
    for url in (f"{env.fhir}/$export", status_url, manifest["output"][0]["url"], f"{env.fhir}/Group"):
        refused = httpx.get(url, headers=KICK_OFF)
        assert refused.status_code == 401, url
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["resourceType"] == "OperationOutcome"
    assert httpx.delete(status_url).status_code == 401
    assert httpx.get(status_url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_another_clients_job_and_files_are_not_found(env: Env) -> None:
    auth, other = env.auth(), env.auth("harbor-chc")
    status_url = kick_off(env, headers=auth).headers["content-location"]
    manifest = manifest_of(status_url, auth)
    assert httpx.get(status_url, headers=other).status_code == 404
    assert httpx.get(manifest["output"][0]["url"], headers=other).status_code == 404
    assert httpx.delete(status_url, headers=other).status_code == 404
    assert httpx.get(status_url, headers=auth).status_code == 200  # still there for its own client
    assert httpx.get(f"{env.fhir}/$export-status/{'0' * 32}", headers=auth).status_code == 404


def test_delete_cancels_and_removes_the_files(env: Env) -> None:
    auth = env.auth()
    status_url = kick_off(env, headers=auth).headers["content-location"]
    job = status_url.rsplit("/", 1)[1]
    manifest = manifest_of(status_url, auth)
    assert (env.tmp / "exports" / job).is_dir()
    cancelled = httpx.delete(status_url, headers=auth)
    assert cancelled.status_code == 202
    assert httpx.get(status_url, headers=auth).status_code == 404
    assert httpx.get(manifest["output"][0]["url"], headers=auth).status_code == 404
    assert not (env.tmp / "exports" / job).exists()
    assert httpx.delete(status_url, headers=auth).status_code == 404
    running = kick_off(env, headers=auth).headers["content-location"]  # cancelled at once, finished or not
    assert httpx.delete(running, headers=auth).status_code == 202
    assert httpx.get(running, headers=auth).status_code == 404


def sourced_id(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"].endswith("/student-sourced-id"))


def test_a_student_consented_only_to_another_organization_never_appears(env: Env) -> None:
    auth = env.auth()
    exported = download(export(env, auth=auth), auth)
    riverside = {orjson.loads(line)["id"] for line in folder(env.out, RIVERSIDE)["Patient"]}
    strangers = {orjson.loads(line)["id"] for line in folder(env.out, HARBOR)["Patient"]} - riverside
    assert strangers  # the example district has students consented to Harbor only
    text = b"\n".join(line for lines in exported.values() for line in lines)
    for patient_id in strangers:
        assert patient_id.encode() not in text


def disclosures(store: Path) -> list[tuple[str, str, str, str, str]]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT student_sourced_id, recipient, destination, consent_id, disclosed FROM disclosures "
            "WHERE channel = 'bulk-export'"
        ).fetchall()


def test_an_export_is_one_disclosure_row_per_student(env: Env) -> None:
    before = len(disclosures(env.store))
    auth = env.auth("harbor-chc")
    kicked = kick_off(env, headers=auth, _type="Patient")
    manifest = manifest_of(kicked.headers["content-location"], auth)
    rows = disclosures(env.store)[before:]
    patients = [orjson.loads(line) for line in download(manifest, auth)["Patient"]]
    assert sorted(r[0] for r in rows) == sorted(sourced_id(p) for p in patients)
    assert {(r[1], r[2]) for r in rows} == {(HARBOR, "api:harbor-chc")}
    assert all(r[3] for r in rows)  # the consent relied on
    job = kicked.headers["content-location"].rsplit("/", 1)[1]
    assert all(job in r[4] and "Patient" in r[4] for r in rows)


def test_since_exports_only_what_the_next_sync_changed(
    tmp_path: Path, keys: dict[str, smart.ClientKeys], env: Env
) -> None:
    port = serve_process.free_port()
    store = tmp_path / "state.sqlite"
    config = write_config(tmp_path, port, keys, store, export_dir=str(tmp_path / "exports"))
    sync(config, tmp_path / "out1")
    first = folder(tmp_path / "out1", RIVERSIDE)
    patient = orjson.loads(sorted(first["Patient"])[0])
    student = sourced_id(patient)
    changed_export = tmp_path / "district"
    shutil.copytree(paths.EXAMPLE, changed_export)
    absent_once(changed_export / "attendance.csv", student)
    with serve_process.serving(config, port, tmp_path / "serve.log") as served:
        url = served.url
        auth = smart.get_token(url, "riverside-ehr", keys["riverside-ehr"], SCOPES)
        headers = {"Authorization": f"Bearer {auth}"}
        before = httpx.get(f"{url}/fhir/$export", headers={**KICK_OFF, **headers})
        since = manifest_of(before.headers["content-location"], headers)["transactionTime"]
        sync(config, tmp_path / "out2", changed_export)
        kicked = httpx.get(f"{url}/fhir/$export", params={"_since": since}, headers={**KICK_OFF, **headers})
        manifest = manifest_of(kicked.headers["content-location"], headers)
        got = download(manifest, headers)
    second = folder(tmp_path / "out2", RIVERSIDE)
    changed = {t: second[t] - first.get(t, set()) for t in second if second[t] - first.get(t, set())}
    assert changed  # the student's Observation at least
    assert got == changed
    observations = [orjson.loads(line) for line in got["Observation"]]
    assert f"Patient/{patient['id']}" in {o["subject"]["reference"] for o in observations}
    assert "Patient" not in got and "Organization" not in got  # unchanged


def absent_once(attendance: Path, student: str) -> None:
    """The student's first Present day before the as-of date becomes an unexcused absence."""
    with attendance.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        if row[0] == student and row[4] == "Present" and row[3] < AS_OF:
            row[4] = "Unexcused Absence"
            break
    else:
        raise AssertionError("no Present day to change")
    with attendance.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def test_files_expire_after_the_configured_time(env: Env, keys: dict[str, smart.ClientKeys]) -> None:
    port = serve_process.free_port()  # a second server on the same store, its exports expiring after a second
    config = write_config(env.tmp, port, keys, env.store, export_dir=str(env.tmp / "short"), export_expiry_seconds=1)
    with serve_process.serving(config, port, env.tmp / f"serve-{port}.log") as served:
        auth = env.auth(url=served.url)
        kicked = httpx.get(f"{served.url}/fhir/$export", headers={**KICK_OFF, **auth})
        status_url = kicked.headers["content-location"]
        manifest = manifest_of(status_url, auth)
        job = status_url.rsplit("/", 1)[1]
        assert (env.tmp / "short" / job).is_dir()
        time.sleep(1.5)
        assert httpx.get(manifest["output"][0]["url"], headers=auth).status_code == 404
        assert httpx.get(status_url, headers=auth).status_code == 404
        assert not (env.tmp / "short" / job).exists()


def test_an_export_from_a_postgresql_store_equals_the_folder(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = new_database(postgres_url, "bulk")
    with served_district(tmp_path_factory.mktemp("bulk-pg"), store_url=url) as district:
        auth = {"Authorization": f"Bearer {district.token(RIVERSIDE)}"}
        kicked = httpx.get(f"{district.fhir}/$export", headers={**KICK_OFF, **auth})
        assert kicked.status_code == 202, kicked.text
        status_url = kicked.headers["content-location"]
        assert download(manifest_of(status_url, auth), auth) == folder(district.out, RIVERSIDE)
        assert httpx.delete(status_url, headers=auth).status_code == 202
        assert httpx.get(status_url, headers=auth).status_code == 404
