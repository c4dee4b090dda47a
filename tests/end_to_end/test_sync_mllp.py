"""`sis2fhir sync --destination mllp://...` to a real MLLP listener: one ORU^R01 per consented student and school,
ACKs decide what is delivered or dead, and the disclosure log holds the message control ids."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hl7
import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.store import open_store
from sis2fhir.store.schema import disclosures, outbox
from tests.support import network, paths
from tests.support.mllp_listener import Answer, MllpListener

pytestmark = pytest.mark.integration

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
AS_OF = "2026-03-31"
runner = CliRunner()


@pytest.fixture(autouse=True)
def district_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLLP delivery needs the district's own namespace, state id system and MSH-3..6 (SIS2FHIR_... variables)."""
    for name, value in network.env().items():
        monkeypatch.setenv(name, value)


@contextmanager
def listener_in_thread(script: dict[int, Answer]) -> Iterator[MllpListener]:
    """The listener runs on its own event loop in a thread, as a separate HIE engine would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listener = MllpListener(script)
    asyncio.run_coroutine_threadsafe(listener.__aenter__(), loop).result(timeout=10)
    try:
        yield listener
    finally:
        asyncio.run_coroutine_threadsafe(listener.__aexit__(None, None, None), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_attendance_reaches_an_hie_as_oru_r01_over_mllp(tmp_path: Path) -> None:
    # the reference: what the same run writes as FHIR, one Observation per consented student x school x recipient
    ref = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    expected = {}
    for path in (tmp_path / "ref").glob("*/Observation.ndjson"):
        for line in path.read_bytes().splitlines():
            obs = orjson.loads(line)
            expected[(path.parent.name, obs["subject"]["identifier"]["value"], obs["performer"][0]["display"])] = obs

    store = f"sqlite:///{tmp_path / 'state.sqlite'}"

    def sync_args(port: int) -> list[str]:
        return [
            "sync",
            str(EXAMPLE),
            "--as-of",
            AS_OF,
            "--store",
            store,
            "--report",
            str(tmp_path / "rows.csv"),
            "--destination",
            f"mllp://127.0.0.1:{port}",
        ]

    with listener_in_thread({0: Answer(code="AE", error="Unknown patient")}) as hie:
        res = runner.invoke(app, sync_args(hie.port))
        assert res.exit_code == 4, res.output  # one message refused (AE): dead letters
        received = list(hie.received)

        # the same export again, to the same HIE: nothing new goes out
        res = runner.invoke(app, sync_args(hie.port))
        assert "0 changes" in res.output
        assert len(hie.received) == len(received)

        dead_letters = runner.invoke(app, ["outbox", "dead", "--store", store])
        assert "Unknown patient" in dead_letters.output  # the HIE's error, kept with the dead letter

        # the HIE fixed what it refused: the dead letter is replayed, accepted, and only it is sent again
        replayed = runner.invoke(app, ["outbox", "replay", "--store", store])
        assert replayed.exit_code == 0, replayed.output
        assert "1 dead letters queued again" in replayed.output and "delivered: 1" in replayed.output
        assert len(hie.received) == len(received) + 1
        assert hie.received[-1] == received[0]  # the same message, unchanged

    assert len(received) == len(expected)
    control_ids = []
    for text in received:
        msg = hl7.parse(text)
        assert str(msg.segment("MSH")[9]) == "ORU^R01^ORU_R01"
        assert str(msg.segment("MSH")[12]) == "2.5.1"
        control_ids.append(str(msg.segment("MSH")[10]))
        state_id = str(msg.segment("PID")[3][0][0])
        school = str(msg.segment("OBX")[23][0][0])
        obx = {str(s[3][0][0]): s for s in msg.segments("OBX")}
        match = [obs for (_, sid, sch), obs in expected.items() if sid == state_id and sch == school]
        assert match, (state_id, school)
        days = {c["code"]["coding"][0]["code"]: c.get("valueQuantity", {}).get("value") for c in match[0]["component"]}
        assert float(str(obx["days-absent"][5])) == pytest.approx(days["days-absent"])
        assert float(str(obx["days-in-membership"][5])) == pytest.approx(days["days-in-membership"])

    engine = open_store(store)
    with engine.connect() as conn:
        logged = conn.execute(select(disclosures)).all()
        dead = conn.execute(select(outbox).where(outbox.c.status == "dead")).all()
    assert dead == []  # replayed and delivered
    assert len(logged) == len(received)
    assert {orjson.loads(r.disclosed)[0] for r in logged} == set(control_ids)


class _ListenerOnPort(MllpListener):
    """The same listener, on a port chosen beforehand (the HIE comes back where it was)."""

    def __init__(self, port: int) -> None:
        super().__init__({})
        self._wanted = port

    async def __aenter__(self) -> MllpListener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._wanted)
        self.port = self._wanted
        return self


def test_outbox_retry_delivers_what_waited_while_the_hie_was_down(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    args = ["sync", str(EXAMPLE), "--as-of", AS_OF, "--store", store, "--report", str(tmp_path / "rows.csv"),
            "--destination", f"mllp://127.0.0.1:{port}"]  # fmt: skip
    down = runner.invoke(app, args)  # nobody listens: everything waits in the outbox
    assert down.exit_code == 4, down.output
    engine = open_store(store)
    with engine.connect() as conn:
        waiting = conn.execute(select(outbox).where(outbox.c.status == "queued")).all()
    assert waiting

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    hie = _ListenerOnPort(port)
    asyncio.run_coroutine_threadsafe(hie.__aenter__(), loop).result(timeout=10)
    try:
        retried = runner.invoke(app, ["outbox", "retry", "--store", store])
        assert retried.exit_code == 0, retried.output
        assert f"delivered: {len(waiting)}" in retried.output
        assert len(hie.received) == len(waiting)
    finally:
        asyncio.run_coroutine_threadsafe(hie.__aexit__(None, None, None), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    with engine.connect() as conn:
        assert conn.execute(select(outbox).where(outbox.c.status == "queued")).all() == []
        assert len(conn.execute(select(disclosures)).all()) == len(waiting)
