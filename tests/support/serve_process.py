"""`sis2fhir serve` as a real process on loopback for the tests: a free port, started with a config file,
waited for on /healthz, stopped with SIGTERM (its stderr, the request log, kept in a file to read)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SIS2FHIR = str(Path(sys.executable).parent / "sis2fhir")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT (the configured api.base_url)
    log: Path  # the process's stderr

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serving(config: Path, port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`sis2fhir serve --port PORT --config CONFIG` until the block ends."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [SIS2FHIR, "serve", "--port", str(port), "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"sis2fhir serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"sis2fhir serve did not answer /healthz: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Served(url, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
