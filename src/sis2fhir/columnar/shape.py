"""Whether attendance.csv has the plain shape the columnar engine reads: else the streaming engine reads it.

The columnar engine hands every row that does not count cleanly to the Python reader, by its line; the line of a
row is its position in the file (header: line 1) only when no row spans lines and no line is blank. So the file is
read columnar only when it holds no quote at all (a quoted field may hold a line break or a comma), no NUL, no
blank line, no bare carriage return (CRLF is fine), and its header names exactly the columns of the format (no
BOM, alias, typo, padding or duplicate: those the Python reader resolves and warns about). Anything else (and a
zip, Ed-Fi XML, a file beside Ed-Fi files) is read by the streaming engine: `unfit` says why, for the run's log.
"""

from __future__ import annotations

import re
from pathlib import Path

from sis2fhir.engine import Rules
from sis2fhir.read.attendance import ATTENDANCE, ATTENDANCE_FILE, edfi_files
from sis2fhir.read.export import Export

COLUMNS = frozenset((*ATTENDANCE.required, *ATTENDANCE.optional, *ATTENDANCE.one_of))
_ODD_BYTES = ((b'"', "a quote"), (b"\x00", "a NUL byte"))
# a blank line, LF or CRLF: one regular expression finds either in a third of the time of two bytes.find (they
# are slow for a pattern that starts with a byte as frequent as a line break: measured 11.6 ms vs 3.1 per 8 MB)
_BLANK_LINE = re.compile(rb"\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
CHUNK = 8 << 20
HEADER_ODD = "its header is not exactly the format's column names"


def unfit(export: Export, rules: Rules, min_bytes: int = 0) -> str | None:
    """Why the export's attendance is not for the columnar engine as far as its kind, size and header tell (None:
    it may be; its bytes are checked by `odd_file`); `min_bytes`: its smallest size."""
    if rules.style == "edfi" or not export.has(ATTENDANCE_FILE):
        return "the attendance is Ed-Fi XML"
    if edfi_files(export):
        return "attendance.csv comes with Ed-Fi files (the streaming reader warns about those)"
    if export.is_zip:
        return "the export is a zip"
    path = export.path_of(ATTENDANCE_FILE)
    if path.stat().st_size < min_bytes:
        return f"attendance.csv is under {min_bytes} bytes"
    if header_of(path) is None:
        return HEADER_ODD
    return None


def header_of(path: Path) -> list[str] | None:
    """The header's column names, when the header is plain (see the module's docstring); None otherwise."""
    with path.open("rb") as f:
        first = f.readline(1 << 16)
    if not first.endswith(b"\n"):
        return None  # no data row, or an overlong header
    try:
        names = first.rstrip(b"\n").removesuffix(b"\r").decode("utf-8").split(",")
    except UnicodeDecodeError:
        return None
    if len(set(names)) != len(names) or not set(names) <= COLUMNS or "studentSourcedId" not in names:
        return None
    return names


def odd_file(path: Path) -> str | None:
    """What makes the file odd for the columnar engine (None: nothing). Read in chunks, not mapped: the pages of a
    mapped file would count in the process's resident memory."""
    if header_of(path) is None:
        return HEADER_ODD
    tail = b""  # the end of the previous chunk: a pattern may straddle two
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            data = tail + chunk
            for pattern, what in _ODD_BYTES:
                if data.find(pattern) >= 0:
                    return f"it holds {what}"
            if _BLANK_LINE.search(data) is not None:
                return "it holds a blank line"
            if data.find(b"\r") >= 0:
                # a CR at the very end of the chunk is judged with the next one (it carries over in `tail`)
                whole = data[:-1] if data.endswith(b"\r") else data
                if _BARE_CR.search(whole) is not None:
                    return "it holds a bare carriage return"
            tail = data[-2:]
    if tail.endswith(b"\r"):
        return "it holds a bare carriage return"
    return None
