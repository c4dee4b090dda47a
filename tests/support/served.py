"""A sync of a copy of the example district with API clients configured (keys made here), into a real state store
(SQLite or the suite's PostgreSQL), and what its `--out` folder and served set hold."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, select

from sis2fhir.store.schema import served_resources
from tests.support import paths

SIS2FHIR = Path(sys.executable).parent / "sis2fhir"
RIVERBEND, NORTHFIELD = "1582147033", "1904672353"  # recipients in examples/district/consents.csv


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(48, "big")).rstrip(b"=").decode()


def public_jwks() -> dict[str, object]:
    """A client's JWKS with one fresh P-384 public key (the API's token checks need a real one)."""
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    key = {"kty": "EC", "crv": "P-384", "x": _b64(numbers.x), "y": _b64(numbers.y), "kid": "k1", "alg": "ES384"}
    return {"keys": [key]}


def write_config(path: Path, url: str, recipients: list[str]) -> Path:
    config = {
        "store_url": url,
        "api": {
            "base_url": "https://sis2fhir.example.org",
            "clients": [
                {
                    "client_id": f"client-{r}",
                    "recipient": r,
                    "jwks": public_jwks(),
                    "scopes": "system/Patient.rs system/Observation.rs system/Consent.rs system/Organization.rs",
                }
                for r in recipients
            ],
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def copy_example(tmp_path: Path) -> Path:
    export = tmp_path / "export"
    shutil.copytree(paths.EXAMPLE, export)
    return export


def sync(export: Path, out: Path, config: Path, as_of: str = "2026-03-31") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SIS2FHIR), "sync", str(export), "--as-of", as_of, "--out", str(out), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-3000:]
    return done


def folder_lines(out: Path, recipient: str) -> dict[str, set[bytes]]:
    """Resource type -> the lines of that recipient's NDJSON folder."""
    return {p.stem: set(p.read_bytes().splitlines()) for p in sorted((out / recipient).glob("*.ndjson"))}


def served_content(url: str, recipient: str) -> dict[str, set[bytes]]:
    """Resource type -> the content of every served row of that recipient (straight from the table)."""
    engine = create_engine(url)
    t = served_resources
    found: dict[str, set[bytes]] = defaultdict(set)
    with engine.connect() as conn:
        for rtype, content in conn.execute(select(t.c.resource_type, t.c.content).where(t.c.recipient == recipient)):
            found[rtype].add(bytes(content))
    engine.dispose()
    return dict(found)
