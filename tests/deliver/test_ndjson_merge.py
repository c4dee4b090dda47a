"""The merge of an NDJSON target and its segments gives what the rule says, whichever way it copies: each resource
id's last line, in first-seen order, stripped; every line that is not a JSON object with a string id dropped. When
every line is kept as it was written the sources are copied whole; one line that must be changed or dropped (an id
twice, damage, whitespace around it, an empty line, a last line without its newline) and they must not be."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sis2fhir.deliver.ndjson import repair_folder
from sis2fhir.deliver.ndjson_merge import compact_ndjson

OLDER, NEWER = (
    ".Observation.ndjson.00000000000000000001.1.00000001.seg",
    ".Observation.ndjson.00000000000000000002.1.00000001.seg",
)


def line(rid: str, v: int) -> bytes:
    return orjson.dumps({"resourceType": "Observation", "id": rid, "v": v}) + b"\n"


def by_the_rule(sources: list[bytes]) -> bytes:
    """What the merge must give, read the plain way: every line (split at newlines only), stripped and parsed."""
    latest: dict[str, bytes] = {}
    for content in sources:
        for raw in content.split(b"\n"):
            stripped = raw.strip()
            try:
                resource = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                continue
            if isinstance(resource, dict) and isinstance(resource.get("id"), str):
                latest[resource["id"]] = stripped + b"\n"
    return b"".join(latest.values())


def merged(folder: Path, target: bytes | None, *segments: bytes) -> bytes:
    path = folder / "Observation.ndjson"
    if target is not None:
        path.write_bytes(target)
    for name, content in zip([OLDER, NEWER], segments, strict=False):
        (folder / name).write_bytes(content)
    compact_ndjson(path)
    assert sorted(p.name for p in folder.iterdir()) == ["Observation.ndjson"]  # the segments are gone
    return path.read_bytes()


CLEAN_TARGET = line("a", 1) + line("b", 1) + line("c", 1)
CLEAN_SEGMENT = line("d", 1) + line("e", 1)


def test_new_resources_only_are_the_sources_one_after_the_other(tmp_path: Path) -> None:
    got = merged(tmp_path, CLEAN_TARGET, CLEAN_SEGMENT, line("f", 1))
    assert (
        got == CLEAN_TARGET + CLEAN_SEGMENT + line("f", 1) == by_the_rule([CLEAN_TARGET, CLEAN_SEGMENT, line("f", 1)])
    )


@pytest.mark.parametrize(
    ("target", "segment"),
    [
        (CLEAN_TARGET, line("b", 2) + CLEAN_SEGMENT),  # an id again in a later segment: its last version, in b's place
        (CLEAN_TARGET, CLEAN_SEGMENT + line("d", 2)),  # an id twice in one segment
        (CLEAN_TARGET + b'{"resourceType": "Obs\n', CLEAN_SEGMENT),  # a damaged line
        (CLEAN_TARGET, line("d", 1)[:-1] + b" \n" + line("e", 1)),  # a trailing space
        (CLEAN_TARGET, line("d", 1)[:-1] + b"\r\n" + line("e", 1)),  # a CRLF
        (CLEAN_TARGET, b"\x0b" + line("d", 1) + line("e", 1)),  # whitespace that strip() removes and JSON does not
        (CLEAN_TARGET + b"\n", CLEAN_SEGMENT),  # an empty line
        (CLEAN_TARGET + line("x", 1)[:-1], CLEAN_SEGMENT),  # a whole last line without its newline
        (CLEAN_TARGET + b" " + line("x", 1)[:-1], CLEAN_SEGMENT),  # ... and one space before it
        (CLEAN_TARGET + b'[1, 2]\n{"id": 7}\n{"v": 1}\n', CLEAN_SEGMENT),  # JSON, but not an object with a string id
        (CLEAN_TARGET, line("d", 1)[:-1] + b'\r{"id": "z"}\n'),  # a lone CR is not a line break: the line is damage
    ],
)
def test_a_line_to_change_or_drop_is_not_copied_as_it_is(tmp_path: Path, target: bytes, segment: bytes) -> None:
    got = merged(tmp_path, target, segment)
    assert got == by_the_rule([target, segment])
    assert got != target + segment  # what copying the sources whole would have given


def test_a_re_emitted_resource_keeps_its_place_and_takes_its_new_version(tmp_path: Path) -> None:
    target = b"".join(line(f"s{i}", 1) for i in range(10))
    segment = line("s3", 2) + line("new", 1) + line("s7", 2)
    got = merged(tmp_path, target, segment)
    ids_and_versions = [(r["id"], r["v"]) for r in map(orjson.loads, got.splitlines())]
    assert ids_and_versions == [(f"s{i}", 2 if i in (3, 7) else 1) for i in range(10)] + [("new", 1)]
    assert got == by_the_rule([target, segment])


def test_without_the_kernels_copy_the_merge_is_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object) -> int:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    target = b"".join(line(f"s{i}", 1) for i in range(3000))  # more than one block of reading and writing
    (tmp_path / "whole").mkdir()
    assert merged(tmp_path / "whole", target, CLEAN_SEGMENT) == target + CLEAN_SEGMENT
    (tmp_path / "runs").mkdir()
    segment = line("s5", 2) + b" " + line("s9", 2)
    assert merged(tmp_path / "runs", target, segment) == by_the_rule([target, segment])


LINES = st.sampled_from(
    [
        *(line(rid, v) for rid in "abcd" for v in (1, 2)),
        line("a", 3)[:-1] + b"\r\n",
        b" " + line("b", 3),
        line("c", 3)[:-1] + b"\t\n",
        b"\n",
        b'{"resourceType": "Obs\n',
        b'{"id": 7}\n',
        b"[1, 2]\n",
    ]
)
FILES = st.lists(LINES, max_size=6).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(target=st.none() | FILES, segments=st.lists(FILES, max_size=2), cut=st.booleans())
def test_any_mix_of_sources_merges_by_the_rule(target: bytes | None, segments: list[bytes], cut: bool) -> None:
    if cut and target:
        target = target[:-1]  # a target whose last line lost its newline
    with tempfile.TemporaryDirectory() as folder:
        got = merged(Path(folder), target, *segments)
    assert got == by_the_rule([target or b"", *segments])


def test_a_merge_that_cannot_land_stops_the_repair_and_the_next_repair_gives_the_same_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contents = {}
    for recipient in ("r1", "r2", "r3"):
        (tmp_path / recipient).mkdir()
        target = line(f"{recipient}-a", 1) + line(f"{recipient}-b", 1)
        (tmp_path / recipient / "Observation.ndjson").write_bytes(target)
        (tmp_path / recipient / OLDER).write_bytes(line(f"{recipient}-a", 2))
        contents[recipient] = by_the_rule([target, line(f"{recipient}-a", 2)])
    rename = os.replace

    def full_disk_for_r2(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if "r2" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        rename(src, dst)

    monkeypatch.setattr(os, "replace", full_disk_for_r2)
    with pytest.raises(OSError, match="No space left"):
        repair_folder(tmp_path)
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == [OLDER, "Observation.ndjson"]  # kept, no .part
    monkeypatch.undo()
    repair_folder(tmp_path)
    for recipient, content in contents.items():
        assert sorted(p.name for p in (tmp_path / recipient).iterdir()) == ["Observation.ndjson"]
        assert (tmp_path / recipient / "Observation.ndjson").read_bytes() == content
