"""The NDJSON folder is written atomically: a process killed with SIGKILL in the middle of large writes, leftovers of
a crash, and a full disk (a real one: a small tmpfs) never leave a truncated or doubled line, never leave an item
recorded as delivered whose file did not land, and the next run gives exactly the folder a clean run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, func, select

from sis2fhir.deliver.ndjson import repair_folder
from sis2fhir.deliver.ndjson_merge import compact_ndjson
from sis2fhir.store.schema import disclosures, outbox
from tests.store.test_store_lock import (
    changes,
    flat,
    hidden_files,
    ndjson_files,
    no_traceback,
    reference,
    run,
    sync_args,
)

__all__ = ["reference"]  # the module fixture: the folder one clean run writes

BATCH = 300  # resources per batch in the SIGKILL test; batch k holds ids k*200 .. k*200+299 (100 shared with k+1)

WRITER = """
import asyncio, sys
from pathlib import Path
from sis2fhir.deliver.base import DeliveryItem, deliver_all
from sis2fhir.deliver.ndjson import NdjsonDestination

dest = NdjsonDestination(Path(sys.argv[1]))
pad = "x" * 3000
batch = 0
while True:
    items = [
        DeliveryItem(f"k{batch}-{i}", "r1", f"s{i}", "", "c",
                     [{"resourceType": "Observation", "id": f"o{i}", "batch": batch, "pad": pad}])
        for i in range(batch * 200, batch * 200 + BATCH)
    ]
    asyncio.run(deliver_all(dest, items))
    print(batch, flush=True)
    batch += 1
""".replace("BATCH", str(BATCH))


def test_a_writer_killed_mid_batch_leaves_whole_batches_and_no_broken_line(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    confirmed = [int(proc.stdout.readline()) for _ in range(3)]  # three batches delivered; the fourth is under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    repair_folder(folder)
    target = folder / "r1" / "Observation.ndjson"
    assert hidden_files(folder) == []  # the temporary of the batch cut short is gone, the segments are merged
    lines = target.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a complete line
    resources = [orjson.loads(line) for line in lines[:-1]]  # every line is a whole resource
    ids = [r["id"] for r in resources]
    assert len(ids) == len(set(ids))  # no doubled line
    landed = sorted({r["batch"] for r in resources})  # ids 200k+100 .. 200k+199 are in batch k alone
    last = landed[-1]
    assert landed == list(range(last + 1)) and last >= confirmed[-1]  # every confirmed batch, in order
    expected = {
        f"o{i}": max(b for b in range(last + 1) if b * 200 <= i < b * 200 + BATCH) for i in range(last * 200 + BATCH)
    }
    assert {r["id"]: r["batch"] for r in resources} == expected  # whole batches only: the latest version of each


def test_compaction_keeps_each_ids_last_line_in_first_seen_order_and_drops_damage(tmp_path: Path) -> None:
    target = tmp_path / "Observation.ndjson"

    def line(rid: str, v: int) -> bytes:
        return orjson.dumps({"resourceType": "Observation", "id": rid, "v": v}) + b"\n"

    target.write_bytes(line("a", 1) + line("b", 1) + b'{"resourceType": "Obs')  # a last line cut short
    (tmp_path / ".Observation.ndjson.00000000000000000001.1.00000001.seg").write_bytes(
        line("c", 1) + b"\n" + b"[1, 2]\r\n" + line("a", 2) + b'{"id": 7}\n'
    )
    (tmp_path / ".Observation.ndjson.00000000000000000002.1.00000001.seg").write_bytes(line("b", 3) + line("d", 1))
    compact_ndjson(target)
    got = [orjson.loads(x) for x in target.read_bytes().splitlines()]
    assert [(r["id"], r["v"]) for r in got] == [("a", 2), ("b", 3), ("c", 1), ("d", 1)]
    assert target.read_bytes().endswith(b"\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Observation.ndjson"]


def test_the_next_run_repairs_what_a_crash_left(tmp_path: Path, reference: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    code, output = run(*sync_args(out), wait=0, log=tmp_path / "first.log")
    assert code == 0, output
    folder = sorted(p for p in out.iterdir() if p.is_dir())[0]
    observations, consents = folder / "Observation.ndjson", folder / "Consent.ndjson"
    first_lines = observations.read_bytes().splitlines(keepends=True)[:5]
    # a temporary cut short by a crash, a segment that was merged but not yet removed (its lines doubled if kept),
    # a truncated last line as the appending writer of earlier versions could leave, and that writer's temporary
    (folder / ".Observation.ndjson.00000000000000000001.1.00000001.part").write_bytes(first_lines[0][:77])
    (folder / ".Observation.ndjson.00000000000000000001.1.00000002.seg").write_bytes(b"".join(first_lines))
    with consents.open("ab") as f:
        f.write(consents.read_bytes().splitlines(keepends=True)[0][:120])
    (folder / "Consent.ndjson.tmp").write_bytes(b'{"resourceType": "Cons')

    code, output = run(*sync_args(out), wait=0, log=tmp_path / "second.log")
    assert code == 0, output
    assert changes(output) == 0
    assert ndjson_files(out) == reference
    assert hidden_files(out) == [] and not (folder / "Consent.ndjson.tmp").exists()


# --- a full disk ---------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A real filesystem that fills up: a tmpfs of the given size (needs root). Yields mount(size) -> its path;
    mount again with another size to free space."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = False

    def mount(size: str) -> Path:
        nonlocal mounted
        opts = f"remount,size={size}" if mounted else f"size={size}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mountpoint)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
        mounted = True
        return mountpoint

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def store_counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = (
            conn.execute(select(func.count()).select_from(outbox)).scalar_one(),
            conn.execute(select(func.count()).select_from(disclosures)).scalar_one(),
        )
    engine.dispose()
    return counts


def ids_in_folder(out: Path) -> set[str]:
    """Every `<recipient>/<Type>.ndjson#<Type>/<id>` the folder holds, in its files and its segments."""
    found = set()
    for target in out.glob("*/*.ndjson"):
        for line in target.read_bytes().splitlines():
            r = orjson.loads(line)
            found.add(f"{target.parent.name}/{target.name}#{r['resourceType']}/{r['id']}")
    for segment in out.glob("*/.*.seg"):  # what landed and is not merged yet
        target = segment.with_name(segment.name[1:].split(".ndjson.", 1)[0] + ".ndjson")
        for line in segment.read_bytes().splitlines():
            r = orjson.loads(line)
            found.add(f"{target.parent.name}/{target.name}#{r['resourceType']}/{r['id']}")
    return found


def disclosed_paths(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(disclosures.c.disclosed)).scalars().all()
    engine.dispose()
    return {p for row in rows for p in orjson.loads(row)}


@pytest.mark.parametrize(
    "size",
    [
        "300k",  # the batch does not fit: nothing lands, nothing is recorded
        "batch",  # the batch lands (and is recorded); merging it into the files does not fit
    ],
)
def test_a_full_disk_under_the_folder_stops_cleanly_and_the_next_run_is_clean(
    small_disk: Callable[[str], Path], tmp_path: Path, reference: dict[str, bytes], size: str
) -> None:
    if size == "batch":  # room for the segments (whole 4 KiB pages each) and a little, not for a merged file
        size = f"{sum(-(-len(b) // 4096) * 4 for b in reference.values()) + 16}k"
    out = small_disk(size) / "out"
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    code, output = run(*sync_args(out, "--store", store), wait=0, log=tmp_path / "full.log")
    assert code == 1, output
    assert "cannot write the NDJSON folder" in flat(output) and "No space left on device" in flat(output)
    no_traceback(output)
    assert not list(out.glob("*/*.part"))
    assert disclosed_paths(store) <= ids_in_folder(out)  # nothing recorded as delivered that did not land
    if size == "300k":
        assert store_counts(store) == (0, 0)
    else:
        assert store_counts(store)[1] == 152  # recorded, and held by the folder's segments until merged

    small_disk("16m")
    code, output = run(*sync_args(out, "--store", store), wait=0, log=tmp_path / "freed.log")
    assert code == 0, output
    assert ndjson_files(out) == reference and hidden_files(out) == []
    code, output = run(*sync_args(out, "--store", store), wait=0, log=tmp_path / "again.log")
    assert code == 0 and changes(output) == 0, output


@pytest.mark.parametrize("size", ["64k", "128k"])  # full while creating the tables; full while recording the run
def test_a_full_disk_under_the_sqlite_store_stops_cleanly(
    small_disk: Callable[[str], Path], tmp_path: Path, reference: dict[str, bytes], size: str
) -> None:
    store = f"sqlite:///{small_disk(size) / 'state.sqlite'}"
    out = tmp_path / "out"
    code, output = run(*sync_args(out, "--store", store), wait=0, log=tmp_path / "full.log")
    assert code == 1, output
    assert "the disk is full" in flat(output)
    assert "[SQL" not in output and "INSERT" not in output
    no_traceback(output)

    small_disk("16m")
    code, output = run(*sync_args(out, "--store", store), wait=0, log=tmp_path / "freed.log")
    assert code == 0, output
    assert changes(output) == 152  # the failed run recorded nothing
    assert ndjson_files(out) == reference and hidden_files(out) == []
