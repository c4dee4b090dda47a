"""A CSV file cut at line starts into byte ranges, for reading one file in several processes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sis2fhir.read.export import Export
from sis2fhir.report import RowReport


@dataclass(frozen=True, slots=True)
class FilePart:
    """A byte range of a CSV file that starts at a line start (for reading one file in several processes)."""

    start: int
    end: int
    line: int  # physical line number of the first line in the range
    report_to: RowReport | None = None  # where header warnings go (a throwaway report: the first part has them)


class Limited(io.RawIOBase):
    """At most `size` bytes of a binary stream."""

    def __init__(self, raw: io.BufferedIOBase, size: int) -> None:
        self._raw, self._left = raw, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        n = self._raw.readinto(view)
        self._left -= n or 0
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def line_parts(export: Export, name: str, parts: int, min_bytes: int) -> list[FilePart] | None:
    """`name` cut at line starts into `parts` byte ranges of about equal size (see attendance_parts for when not)."""
    path = export.path_of(name)
    size = path.stat().st_size
    if size < min_bytes:
        return None
    cuts = [size * i // parts for i in range(1, parts)]
    starts: list[tuple[int, int]] = []  # (byte offset of a line start, its line number)
    lines = 1
    header_end = -1
    pos = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            if b'"' in chunk:
                return None
            if header_end < 0 and (i := chunk.find(b"\n")) >= 0:
                header_end = pos + i + 1
            while cuts and cuts[0] < pos + len(chunk):
                i = chunk.find(b"\n", max(0, cuts[0] - pos))
                if i < 0:
                    break
                starts.append((pos + i + 1, lines + chunk.count(b"\n", 0, i + 1)))
                cuts.pop(0)
            lines += chunk.count(b"\n")
            pos += len(chunk)
    if header_end < 0 or len(starts) != parts - 1:
        return None
    bounds = [(header_end, 2), *starts, (size, lines)]
    throwaway = RowReport()
    return [
        FilePart(a, b, line, None if i == 0 else throwaway)
        for i, ((a, line), (b, _)) in enumerate(pairwise(bounds))
        if b > a
    ]
