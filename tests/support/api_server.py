"""The API served by a real uvicorn process on loopback, from a config file (`serve_app`).

`app` names a factory `module:function` taking no argument: it reads the config named by SIS2FHIR_TEST_CONFIG.
The default is a small app of the SMART router and one protected route (tests/support/smart_app.py); the API's
own tests pass `sis2fhir.api.app:...` once it exists (or use `sis2fhir serve`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.paths import ROOT
from tests.support.sekmet import free_port

STARTUP_LIMIT = 30.0  # seconds for uvicorn to answer: the machine is shared


@contextmanager
def serve_app(
    config: Path, port: int | None = None, app: str = "tests.support.smart_app:create_test_app"
) -> Iterator[str]:
    """Start `python -m uvicorn --factory app` with SIS2FHIR_TEST_CONFIG=config; yields its base URL. The base_url
    in the config must be http://127.0.0.1:<port> for the token audience to match: pass the port chosen for it."""
    port = port or free_port()
    env = {**os.environ, "SIS2FHIR_TEST_CONFIG": str(config)}
    log = config.with_suffix(f".{port}.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited {process.returncode}: {log.read_text()[-2000:]}")
            try:
                httpx.get(f"{base}/fhir/.well-known/smart-configuration", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not answer: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
