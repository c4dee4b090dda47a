"""A Bulk Data style folder: `<folder>/<recipient>/<ResourceType>.ndjson`, one resource per line, latest version.

The folder is self-contained (`self_contained`): besides Observation and Consent it holds the Patient and the
Organizations they refer to (Patient.ndjson, Organization.ndjson), and every reference is literal and resolves in
the recipient's folder. An Organization comes in many items (every student's); the merge keeps one line per id.

Nothing here ever appends to, or writes into, a file a reader may be looking at. Every write is atomic: a
temporary file in the same folder, write, flush, fsync, rename over the target, fsync the folder. So a crash
(kill -9, power) or a full disk leaves either the old complete file or the new complete file, never a truncated
or doubled line.

- `deliver` writes each batch as hidden segments beside the target (`.Observation.ndjson.<run>.<seq>.seg`),
  all of a batch's temporaries first and then their renames, and only then answers "delivered". A batch that
  cannot be written (disk full, quota, file size limit, permissions) leaves nothing behind and raises
  `FolderWriteError`: the run stops and none of the batch's items is recorded as delivered.
- `close` merges the target and its segments (the last version of each resource id wins, in first-seen order)
  into a new target, atomically, then removes the segments, oldest first (`ndjson_merge`).
- The next run repairs what a crash left: temporaries (`*.part`) are removed, segments still there are merged, and
  a target that does not end in a newline (a truncated line, as the appending writer of earlier versions could
  leave) is rewritten without its damaged lines. Repair happens in `close`, which every run calls, even with 0
  changes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import orjson

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, DestinationUnusable, Outcome
from sis2fhir.deliver.ndjson_merge import PARTIAL, SEGMENT, compact_all, fsync_folder, write_durably

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class FolderWriteError(DestinationUnusable):
    """The NDJSON folder cannot take what is written to it; nothing of the batch was left behind."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path, self.disk_full = path, error.errno in DISK_FULL
        advice = "free some space" if self.disk_full else "check the folder's permissions"
        super().__init__(
            f"cannot write the NDJSON folder ({path}): {error.strerror or error}. Nothing more was written or "
            f"recorded as delivered; {advice} and run the same command again"
        )


def recipient_folder_name(recipient: str) -> str:
    """The recipient identifier as a folder name (NPIs and HIE ids are usually safe already)."""
    return _SAFE.sub("_", recipient) or "_"


class NdjsonDestination(Destination):
    batch_size = 5000  # local files: large batches, one fsync per file each
    local = True  # the pipeline hands items over as they are made (no network: nothing to wait for)
    self_contained = True  # a folder per recipient that loads with `$import`: Patient and Organizations included
    reads_resources = False  # it writes each item's lines as they are, named by their heads

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"ndjson:{folder.resolve()}"
        self._run = f"{time.time_ns():020d}.{os.getpid()}"  # segments of later runs sort after earlier ones
        self._seq = 0
        self._touched: set[Path] = set()
        # (recipient, resource type) -> its target file, and what the disclosure log names a resource in it by
        self._targets: dict[tuple[str, str], tuple[Path, str]] = {}

    def _target(self, recipient: str, rtype: str) -> tuple[Path, str]:
        found = self._targets.get((recipient, rtype))
        if found is None:
            name = f"{recipient_folder_name(recipient)}/{rtype}.ndjson"
            found = self._targets[(recipient, rtype)] = (self.folder / name, f"{name}#{rtype}/")
        return found

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        # per target, resource id -> line: one line per id (the merge's rule: the last version, in first-seen
        # order), so that the Organizations every student's item carries are written once per batch
        lines: dict[Path, dict[str, bytes]] = {}
        written: list[tuple[DeliveryItem, list[str]]] = []
        for item in items:
            paths = []
            encoded = item.lines or tuple(map(orjson.dumps, item.resources))  # the item's own bytes, when it has them
            for (rtype, rid, _), line in zip(item.resource_heads(), encoded, strict=True):
                target, named = self._target(item.recipient, rtype)
                in_target = lines.get(target)
                if in_target is None:
                    in_target = lines[target] = {}
                in_target[rid] = line
                paths.append(named + rid)
            written.append((item, paths))
        segments = []
        for target in lines:
            self._seq += 1
            segments.append((target, target.with_name(f".{target.name}.{self._run}.{self._seq:08d}")))
        temporaries = [segment.with_name(segment.name + PARTIAL) for _, segment in segments]
        folders = list(dict.fromkeys(t.parent for t, _ in segments))
        loop = asyncio.get_running_loop()
        try:
            for folder in folders:
                _in_folder(folder, partial(folder.mkdir, parents=True, exist_ok=True))
            # phase 1: every temporary written and on disk. Each fsync waits for the disk: in threads, side by side,
            # a batch's files (a recipient's resource types, for every recipient) wait for it together
            await _side_by_side(
                loop,
                [
                    partial(_in_folder, tmp.parent, partial(write_durably, tmp, lines[target].values()))
                    for (target, _), tmp in zip(segments, temporaries, strict=True)
                ],
            )
            for (target, segment), tmp in zip(segments, temporaries, strict=True):  # phase 2: all renamed
                _in_folder(target.parent, partial(os.replace, tmp, segment.with_name(segment.name + SEGMENT)))
                self._touched.add(target)
            await _side_by_side(loop, [partial(_in_folder, f, partial(fsync_folder, f)) for f in folders])
        except FolderWriteError:
            for tmp in temporaries:  # a batch lands whole or not at all
                tmp.unlink(missing_ok=True)
                tmp.with_name(tmp.name.removesuffix(PARTIAL) + SEGMENT).unlink(missing_ok=True)
            raise
        yield [DeliveryResult(item.key, Outcome.DELIVERED, disclosed=paths) for item, paths in written]

    async def close(self) -> None:
        touched, self._touched = self._touched, set()
        try:
            repair_folder(self.folder, also=touched)
        except OSError as e:
            raise FolderWriteError(self.folder, e) from None


def repair_folder(folder: Path, also: Iterable[Path] = ()) -> None:
    """Bring every `<folder>/<recipient>/*.ndjson` to its clean state: temporaries removed, segments merged, damaged
    targets rewritten. Raises OSError (the segments then stay, and the next run merges them)."""
    if not folder.is_dir():
        return
    targets: set[Path] = set(also)
    for sub in folder.iterdir():
        if not sub.is_dir() or sub.name == "quarantine":  # the pipeline's quarantine, not a recipient's folder
            continue
        for p in sub.iterdir():
            name = p.name
            if name.endswith(PARTIAL) or name.endswith(".ndjson.tmp"):  # .ndjson.tmp: earlier versions' temporary
                p.unlink(missing_ok=True)
            elif name.startswith(".") and name.endswith(SEGMENT) and ".ndjson." in name:
                targets.add(p.with_name(name[1:].split(".ndjson.", 1)[0] + ".ndjson"))
            elif name.endswith(".ndjson") and not _ends_cleanly(p):
                targets.add(p)
    compact_all(sorted(targets))


def _in_folder(folder: Path, step: Callable[[], object]) -> None:
    """`step()`, an OSError from it being this folder's FolderWriteError."""
    try:
        step()
    except OSError as e:
        raise FolderWriteError(folder, e) from None


async def _side_by_side(loop: asyncio.AbstractEventLoop, steps: list[Callable[[], None]]) -> None:
    """The steps in the loop's executor threads, all at once; when all are done, the first one's failure raised."""
    outcomes = await asyncio.gather(*(loop.run_in_executor(None, step) for step in steps), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _ends_cleanly(path: Path) -> bool:
    """Whether a file is empty or ends with a newline (a truncated last line does not)."""
    try:
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return False
