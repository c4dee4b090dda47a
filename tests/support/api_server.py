"""The API served by a real uvicorn process on loopback, from a config file (`serve_app`).

`app` names a factory `module:function` taking no argument: it reads the config named by SIS2FHIR_TEST_CONFIG.
The default is a small app of the SMART router and one protected route (tests/support/smart_app.py); the API's
own tests pass `sis2fhir.api.app:...` once it exists (or use `sis2fhir serve`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.sekmet import free_port
from tests.support.serve_process import running

STARTUP_LIMIT = 30.0  # seconds for uvicorn to answer: the machine is shared


@contextmanager
def serve_app(
    config: Path, port: int | None = None, app: str = "tests.support.smart_app:create_test_app"
) -> Iterator[str]:
    """Start `python -m uvicorn --factory app` with SIS2FHIR_TEST_CONFIG=config; yields its base URL. The base_url
    in the config must be http://127.0.0.1:<port> for the token audience to match: pass the port chosen for it."""
    port = port or free_port()
    env = {**os.environ, "SIS2FHIR_TEST_CONFIG": str(config)}
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1", "--port", str(port)]
    probe = f"{base}/fhir/.well-known/smart-configuration"
    with running(argv, probe, config.with_suffix(f".{port}.log"), env, cwd=ROOT, limit=STARTUP_LIMIT):
        yield base
