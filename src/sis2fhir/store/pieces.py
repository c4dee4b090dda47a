"""A district's per-student state in the store, in pieces: the students of a district fall into PIECES pieces by a
hash of their sourcedId, each piece one row of zlib JSON `{school: {student: value}}`, read and written one at a
time. The summary digest (summaries.py) and the transition state (attendance_events.py) are kept this way.

Why pieces: as one blob, a daily increment after a full sync of 1M students parsed the whole digest (1M students'
numbers, about 570 MB of Python objects, measured 2026-12-03) and the whole transition state (another 230 MB)
before comparing a single student. In pieces a run holds the compressed rows (a few tens of MB at 1M) and one
parsed piece at a time, and a run that changes a few students rewrites only their pieces.

`piece_of` is part of the stored format: changing it (or PIECES) needs a migration that regroups every row."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import orjson

PIECES = 256  # pieces per district: about 3,900 students each at 1M, one or a few at the example district's size

T = TypeVar("T")
# school -> student -> the stored value (a JSON array)
Piece = dict[str, dict[str, Any]]


def piece_of(student_sourced_id: str) -> int:
    """The piece a student's rows belong to: CRC-32 of the UTF-8 sourcedId, modulo PIECES (stable across runs,
    Python versions and machines, unlike hash())."""
    return zlib.crc32(student_sourced_id.encode()) % PIECES


def by_piece(items: Iterable[T], student: Callable[[T], str]) -> dict[int, list[T]]:
    """The items grouped by their student's piece, each group in the order given."""
    groups: dict[int, list[T]] = {}
    for item in items:
        n = piece_of(student(item))
        group = groups.get(n)
        if group is None:
            group = groups[n] = []
        group.append(item)
    return groups


def split(whole: Mapping[str, Mapping[str, Any]]) -> dict[int, Piece]:
    """A whole district's `{school: {student: value}}` in pieces (the migration from the one-blob format)."""
    pieces: dict[int, Piece] = {}
    for school, by_student in whole.items():
        for student, value in by_student.items():
            pieces.setdefault(piece_of(student), {}).setdefault(school, {})[student] = value
    return pieces


def unpack(blob: bytes) -> Piece:
    parsed: Piece = orjson.loads(zlib.decompress(blob))
    return parsed


def pack(piece_json: bytes) -> bytes:
    """A piece as stored: the JSON of its `{school: {student: value}}`, compressed."""
    return zlib.compress(piece_json, 6)
