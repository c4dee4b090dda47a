"""A Bulk Data style folder: `<folder>/<recipient>/<ResourceType>.ndjson`, one resource per line, latest version.

New versions are appended (and flushed to disk) as they are delivered; `close()` compacts each touched file so
that it holds the latest version of every resource once. A crash between the two leaves a file whose last line
for an id is the newest, and the next run compacts it.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO

import orjson

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def recipient_folder_name(recipient: str) -> str:
    """The recipient identifier as a folder name (NPIs and HIE ids are usually safe already)."""
    return _SAFE.sub("_", recipient) or "_"


class NdjsonDestination(Destination):
    batch_size = 5000  # local files: large batches, one flush each
    local = True  # the pipeline hands items over as they are made (no network: nothing to wait for)

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"ndjson:{folder.resolve()}"
        self._files: dict[Path, IO[bytes]] = {}
        self._touched: set[Path] = set()

    def _file(self, recipient: str, resource_type: str) -> IO[bytes]:
        path = self.folder / recipient_folder_name(recipient) / f"{resource_type}.ndjson"
        f = self._files.get(path)
        if f is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = path.open("ab")
            self._files[path] = f
            self._touched.add(path)
        return f

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        results: list[DeliveryResult] = []
        written: list[tuple[DeliveryItem, list[str]]] = []
        for item in items:
            paths = []
            for resource in item.resources:
                rtype = resource["resourceType"]
                f = self._file(item.recipient, rtype)
                f.write(orjson.dumps(resource))
                f.write(b"\n")
                paths.append(f"{recipient_folder_name(item.recipient)}/{rtype}.ndjson#{rtype}/{resource['id']}")
            written.append((item, paths))
        try:
            for f in self._files.values():
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            yield [DeliveryResult(i.key, Outcome.RETRY, f"cannot write the NDJSON folder: {e.strerror}") for i in items]
            return
        for item, paths in written:
            results.append(DeliveryResult(item.key, Outcome.DELIVERED, disclosed=paths))
        yield results

    async def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        for path in sorted(self._touched):
            compact_ndjson(path)
        self._touched.clear()


def compact_ndjson(path: Path) -> None:
    """Keep the last line for each resource id, in first-seen order; replace the file atomically."""
    latest: dict[str, bytes] = {}
    with path.open("rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rid = orjson.loads(line).get("id", "")
            latest[rid] = line
    tmp = path.with_suffix(".ndjson.tmp")
    with tmp.open("wb") as out:
        for line in latest.values():
            out.write(line)
            out.write(b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
