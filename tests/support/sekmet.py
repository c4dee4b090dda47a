"""Start the real FHIR R4 server sekmet-fhir on a free loopback port with a throwaway data dir.

Facts about sekmet-fhir 0.1.1 as seen here (the adapter must not rely on them beyond what FHIR promises):
- CapabilityStatement: fhirVersion 4.0.1, rest.interaction transaction/batch/history-system;
  conditionalCreate and conditionalUpdate true on every type. Patient operations are only $everything
  and $export: no Patient/$match (POST Patient/$match answers 404 OperationOutcome "not-supported").
- Search: Patient?identifier=system|value; Observation?subject=Patient/<id>, ?patient=, chained
  ?patient.identifier=system|value, ?component-code=system|code; Consent?patient=; _summary=count gives total.
- If-None-Exist: 201 on first create, 200 with the existing resource after.
- Conditional PUT Observation?identifier=system|value in a transaction: 201 first, then 200 and a new
  version on replay (the server does not skip identical content) -- never a second resource.
- A transaction with one invalid entry: 400 OperationOutcome with expression like "Observation.valueFoo" and
  diagnostics "Transaction rolled back: ..." that do NOT name the entry index; nothing is stored.
- PUT with a stale If-Match: 412 OperationOutcome code "conflict".
- It stores a logical reference {"identifier": {...}} as given and does not resolve it to a Patient.
- SIGTERM takes about 2 s to shut it down.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import paths

REPO = paths.ROOT
INSTALL_SCRIPT = REPO / "scripts" / "install-sekmet.sh"


class SekmetUnavailable(RuntimeError):
    """sekmet-fhir is not installed or did not come up."""


def sekmet_executable() -> Path:
    """The sekmet CLI: $SEKMET_BIN, else .venv-ehr/bin/sekmet (installed on demand)."""
    if os.environ.get("SEKMET_BIN"):
        return Path(os.environ["SEKMET_BIN"])
    exe = REPO / ".venv-ehr" / "bin" / "sekmet"
    if not exe.exists():
        done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False)
        if done.returncode != 0 or not exe.exists():
            raise SekmetUnavailable(
                f"sekmet-fhir is not installed and {INSTALL_SCRIPT.name} failed: {done.stderr.strip()[-500:]}"
            )
    return exe


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int, data_dir: Path) -> str:
    return (
        f"base_url: http://127.0.0.1:{port}/fhir\n"
        "host: 127.0.0.1\n"
        f"port: {port}\n"
        f"data_dir: {data_dir}\n"
        f"own_private_key_path: {data_dir / 'keys' / 'sekmet_private.pem'}\n"
        "simulator: {enabled: false}\n"  # otherwise it acts on orders by itself
        "validation: {inbound: strict}\n"
        "log_inbound: false\n"
    )


@contextmanager
def running_sekmet(startup_timeout: float = 30.0) -> Iterator[str]:
    """Run sekmet-fhir on a free loopback port with a fresh data dir; yield its FHIR base URL; stop."""
    exe = sekmet_executable()
    workdir = Path(tempfile.mkdtemp(prefix="sis2fhir-sekmet-"))
    port = free_port()
    config = workdir / "ehr.yaml"
    config.write_text(_config(port, workdir / "data"))
    log = (workdir / "server.log").open("wb")
    base = f"http://127.0.0.1:{port}/fhir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    proc = subprocess.Popen(
        [str(exe), "serve", "-c", str(config)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise SekmetUnavailable(f"sekmet exited with {proc.returncode}: {_tail(workdir / 'server.log')}")
            try:
                if httpx.get(f"{base}/metadata", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SekmetUnavailable(f"sekmet did not answer /metadata: {_tail(workdir / 'server.log')}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""
