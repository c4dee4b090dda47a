"""What a sync's output depends on, as one digest (a run's fingerprint): the bytes of the export (every file of the
folder, or the zip), the effective settings and policy, the as-of date, the recipients' routes and the
destinations, the sis2fhir code (its version and the bytes of its modules and data) and the store's schema revision.

Nothing else a run writes depends on the clock: the as-of date is the command's (`--as-of`, default today,
cli/options.as_of_date) and the consent gate decides by it (gate.consent_permits); the clock only stamps records
(times in the outbox, the disclosure log, an HL7 v2 message's own time), never an id, a key or a number.

The files are hashed streaming (hashlib.file_digest), so memory does not grow with the export: SHA-256, which this
machine's CPU does in hardware (the 1.05 GB attendance.csv of a 100k-student district: 0.60 s of CPU, 1.7 GB/s;
BLAKE2b took 0.88 s), measured 2026-12-02; the whole 1.1 GB export in 0.66 s."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from functools import cache
from pathlib import Path
from stat import S_ISREG

import orjson

import sis2fhir
from sis2fhir.config import Settings
from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.routing import Route
from sis2fhir.store.migrate import head

Stat = tuple[str, int, int]  # (path relative to the export, size, mtime in ns)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    digest: str
    files: tuple[
        Stat, ...
    ]  # what was hashed, as it stood: compared again after a full run (a file rewritten meanwhile)

    def unchanged_since(self, export: Path) -> bool:
        """The export's files are still those hashed (same names, sizes and modification times)."""
        try:
            return tuple(stat for stat, _ in _files(export)) == self.files
        except OSError:
            return False


def run_fingerprint(
    export: Path,
    as_of: date,
    settings: Settings,
    routes: dict[str, list[Route]],
    one_off: Iterable[Route],
    destinations: dict[str, Destination],
) -> Fingerprint | None:
    """The run's fingerprint, or None when a file cannot be read (the full run then says what is wrong)."""
    h = hashlib.blake2b(digest_size=32)

    def part(name: str, value: object) -> None:
        blob = orjson.dumps(value, default=_canonical, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        h.update(f"{name}:{len(blob)}:".encode())
        h.update(blob)

    try:
        part("sis2fhir", [sis2fhir.__version__, head(), _code_digest()])
        part("as_of", as_of.isoformat())
        # the store is where the fingerprint is kept (and its URL may hold a password): not part of what it says
        part("settings", settings.model_dump(exclude={"store_url"}))
        part("policy", settings.policy.resolve().model_dump())
        part("routes", {recipient: [asdict(r) for r in rts] for recipient, rts in routes.items()})
        part("one_off", [asdict(r) for r in one_off])
        part(
            "destinations",
            {
                name: [type(d).__module__, type(d).__qualname__, d.local, d.self_contained]
                for name, d in destinations.items()
            },
        )
    except TypeError:  # orjson's JSONEncodeError: a value with no canonical form
        return None
    stats: list[Stat] = []
    try:
        for stat, path in _files(export):
            with path.open("rb") as f:
                file_digest = hashlib.file_digest(f, "sha256").hexdigest()
            part("file", [*stat[:2], file_digest])
            stats.append(stat)
    except OSError:
        return None
    if not stats:
        return None
    return Fingerprint(h.hexdigest(), tuple(stats))


def _canonical(value: object) -> object:
    """What orjson does not write itself: a set in sorted order (its iteration order changes with the process's
    hash seed: the policy's absence categories are a frozenset), a path as text."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no canonical form")  # no fingerprint: the run goes in full


def _files(export: Path) -> list[tuple[Stat, Path]]:
    """Every file of a folder export (all of it: more than the run reads, never less), or the zip itself."""
    if export.is_file():
        st = export.stat()
        return [((export.name, st.st_size, st.st_mtime_ns), export)]
    if not export.is_dir():
        raise FileNotFoundError(export)
    found: list[tuple[Stat, Path]] = []

    def unreadable(e: OSError) -> None:
        raise e

    for here, dirs, names in os.walk(export, onerror=unreadable):
        dirs.sort()
        for n in sorted(names):
            path = Path(here) / n
            st = path.stat()  # a link that points nowhere raises: in doubt
            if not S_ISREG(st.st_mode):  # opening a named pipe with no writer would wait for ever: the full run
                raise OSError(f"not a regular file: {n}")  # says what is wrong with it
            found.append(((path.relative_to(export).as_posix(), st.st_size, st.st_mtime_ns), path))
    return found


@cache
def _code_digest() -> str:
    """The bytes of sis2fhir's own modules and data (an upgrade, or a changed profile, is another run)."""
    root = Path(sis2fhir.__file__).parent
    h = hashlib.blake2b(digest_size=32)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.blake2b(path.read_bytes()).digest())
    return h.hexdigest()
