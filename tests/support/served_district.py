"""The example district synced into a state store with two API clients (one per recipient organization), and
`sis2fhir serve` on that store as a real process on loopback. Keys are made here; tokens come through the real
token flow (tests.support.smart)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import network, paths, serve_process, smart

AS_OF = "2026-03-31"
RIVERSIDE, HARBOR = "1582147033", "1729034169"  # recipients in examples/district/consents.csv
CLIENT_IDS = {RIVERSIDE: "riverside-ehr", HARBOR: "harbor-chc"}
SCOPES = "system/Patient.rs system/Observation.rs system/Consent.rs system/Organization.rs"


@dataclass
class District:
    url: str  # the public base (api.base_url); the FHIR base is url/fhir
    out: Path  # the `sync --out` folder of the same run: what each recipient may hold
    keys: dict[str, smart.ClientKeys]  # recipient -> its client's keys
    served: serve_process.Served
    config: Path
    store_url: str

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def token(self, recipient: str, scope: str = SCOPES) -> str:
        return smart.get_token(self.url, CLIENT_IDS[recipient], self.keys[recipient], scope)

    def headers(self, recipient: str, scope: str = SCOPES) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(recipient, scope)}", "Accept": "application/fhir+json"}

    def get(self, path: str, recipient: str | None = None, **params: Any) -> httpx.Response:
        headers = self.headers(recipient) if recipient else {"Accept": "application/fhir+json"}
        return httpx.get(f"{self.fhir}/{path}", params=params, headers=headers, timeout=30)

    def ndjson(self, recipient: str, rtype: str) -> list[dict[str, Any]]:
        path = self.out / recipient / f"{rtype}.ndjson"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_api_config(tmp: Path, port: int, keys: dict[str, smart.ClientKeys], store_url: str) -> Path:
    clients = [smart.api_client_config(CLIENT_IDS[r], r, k, SCOPES) for r, k in keys.items()]
    return network.write_config(
        tmp / "sis2fhir.yaml",
        store_url=store_url,
        api={"base_url": f"http://127.0.0.1:{port}", "clients": clients},
    )


def sync(
    config: Path, out: Path, export: Path = paths.EXAMPLE, as_of: str = AS_OF, *extra: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            serve_process.SIS2FHIR,
            "sync",
            str(export),
            "--as-of",
            as_of,
            "--config",
            str(config),
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: the example has rows it rejects on purpose
    return done


@contextmanager
def served_district(tmp: Path, store_url: str | None = None) -> Iterator[District]:
    """The example district synced (`sync --out`, the config's store: `store_url`, else a SQLite file in `tmp`)
    and served until the block ends."""
    port = serve_process.free_port()
    keys = {RIVERSIDE: smart.make_client_keys("RS384"), HARBOR: smart.make_client_keys("ES384")}
    store_url = store_url or f"sqlite:///{tmp / 'state.sqlite'}"
    config = write_api_config(tmp, port, keys, store_url)
    out = tmp / "out"
    sync(config, out)
    with serve_process.serving(config, port, tmp / "serve.log") as served:
        yield District(served.url, out, keys, served, config, store_url)
