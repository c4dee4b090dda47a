"""`sis2fhir serve` as a real process on loopback for the tests: a free port, started with a config file,
waited for on /healthz, stopped with SIGTERM (its stderr, the request log, kept in a file to read)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.sekmet import free_port

__all__ = ["SIS2FHIR", "Served", "free_port", "running", "serving"]

SIS2FHIR = str(Path(sys.executable).parent / "sis2fhir")


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT (the configured api.base_url)
    log: Path  # the process's stderr

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running(
    argv: Sequence[str],
    probe: str,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    limit: float = 60.0,
    stdout_to_log: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (its stderr, and stdout unless told not to, into `log`) until the block ends, once
    `probe` answers 200; stopped with SIGTERM, then killed if it does not stop."""
    with log.open("wb") as err:
        stdout = err if stdout_to_log else subprocess.DEVNULL
        proc = subprocess.Popen(list(argv), stdout=stdout, stderr=err, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + limit
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(probe, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv[0]} did not answer {probe}: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def serving(config: Path, port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`sis2fhir serve --port PORT --config CONFIG` until the block ends."""
    url = f"http://127.0.0.1:{port}"
    argv = [SIS2FHIR, "serve", "--port", str(port), "--config", str(config)]
    with running(argv, f"{url}/healthz", log, env, stdout_to_log=False):
        yield Served(url, log)
