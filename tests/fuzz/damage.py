"""Ways to break an export's files and zips, as bytes in and bytes out (no knowledge of what is expected)."""

from __future__ import annotations

import csv
import io
import random
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.fuzz.district import parse_line, write_line

MARK = "\ue000"  # a private-use character standing for raw bytes spliced into a field after CSV quoting


def set_field(line: bytes, col: int, value: Callable[[str], str] | str, raw: bytes = b"") -> bytes:
    """The line with field `col` replaced (quoted as csv would); MARK in the new value becomes `raw` bytes."""
    ending = "\r\n" if line.endswith(b"\r\n") else ("\n" if line.endswith(b"\n") else "")
    fields = parse_line(line)
    fields[col] = value(fields[col]) if callable(value) else value
    return write_line(fields, ending).encode("utf-8").replace(MARK.encode("utf-8"), raw)


def with_lines(data: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    return b"".join(edit(data.splitlines(keepends=True)))


def replace_line(lines: list[bytes], line: int, new: bytes) -> list[bytes]:
    return [*lines[: line - 1], new, *lines[line:]]


def insert_after(lines: list[bytes], line: int, new: bytes) -> list[bytes]:
    return [*lines[:line], new, *lines[line:]]


def truncate_in_field(lines: list[bytes], col: int, keep: int) -> list[bytes]:
    """The last row cut `keep` characters into field `col`: the file ends there, mid-row, without a newline."""
    fields = parse_line(lines[-1])
    head = write_line(fields[:col], "").encode() + (b"," if col else b"")
    return [*lines[:-1], head + fields[col][:keep].encode()]


def crlf_mix(lines: list[bytes]) -> list[bytes]:
    """Every other line ends in CRLF (as when two systems concatenated parts of a file)."""
    return [ln[:-1] + b"\r\n" if i % 2 and ln.endswith(b"\n") else ln for i, ln in enumerate(lines)]


def rewrite_columns(
    data: bytes, order: Callable[[list[str]], list[int]], extra: tuple[str, str] | None = None
) -> bytes:
    """The whole file rewritten with its columns in another order (or some dropped), and an extra column."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    idx = order(rows[0])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for n, row in enumerate(rows):
        new = [row[i] if i < len(row) else "" for i in idx]
        if extra is not None:
            new.insert(len(new) // 2, extra[0] if n == 0 else f"{extra[1]}{n}")
        w.writerow(new)
    return buf.getvalue().encode("utf-8")


def shuffled(rng: random.Random) -> Callable[[list[str]], list[int]]:
    def order(header: list[str]) -> list[int]:
        idx = list(range(len(header)))
        while idx == sorted(idx):
            rng.shuffle(idx)
        return idx

    return order


def without(columns: tuple[str, ...]) -> Callable[[list[str]], list[int]]:
    return lambda header: [i for i, h in enumerate(header) if h not in columns]


# ---------------------------------------------------------------- zips


def zip_folder(folder: Path, target: Path, prefix: str = "", method: int = zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(target, "w", method) as z:
        for p in sorted(folder.iterdir()):
            if p.is_file():
                z.write(p, prefix + p.name)


def _member_offsets(data: bytes, name: str) -> tuple[int, int]:
    """(local header offset, central directory entry offset) of a member."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(name)
    local = info.header_offset
    end = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack("<I", data[end + 16 : end + 20])[0]
    pos = cd_offset
    while pos < end:
        n, m, k = struct.unpack("<HHH", data[pos + 28 : pos + 34])
        if data[pos + 46 : pos + 46 + n].decode("utf-8") == name:
            return local, pos
        pos += 46 + n + m + k
    raise KeyError(name)


def zip_patch_member(data: bytes, name: str, *, flags: int = 0, method: int | None = None) -> bytes:
    """Set general-purpose flag bits (1: encrypted) or the compression method of a member, in both headers."""
    buf = bytearray(data)
    local, central = _member_offsets(data, name)
    for at, flag_pos, method_pos in ((local, 6, 8), (central, 8, 10)):
        if flags:
            (old,) = struct.unpack("<H", buf[at + flag_pos : at + flag_pos + 2])
            buf[at + flag_pos : at + flag_pos + 2] = struct.pack("<H", old | flags)
        if method is not None:
            buf[at + method_pos : at + method_pos + 2] = struct.pack("<H", method)
    return bytes(buf)


def zip_bad_crc(data: bytes, name: str) -> bytes:
    """One byte of a member's data flipped (stored members: the CRC-32 no longer matches)."""
    buf = bytearray(data)
    local, _ = _member_offsets(data, name)
    n, m = struct.unpack("<HH", buf[local + 26 : local + 30])
    start = local + 30 + n + m
    (size,) = struct.unpack("<I", buf[local + 18 : local + 22])
    buf[start + size // 2] ^= 0x20
    return bytes(buf)


def zip_with(folder: Path, target: Path, extra: list[tuple[str, bytes]], skip: tuple[str, ...] = ()) -> None:
    """The folder zipped (stored), plus extra members written after it (duplicates and odd names allowed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": that is the point
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.name not in skip:
                    z.write(p, p.name)
            for name, content in extra:
                z.writestr(zipfile.ZipInfo(name, (2026, 3, 31, 0, 0, 0)), content)


def zip_bomb_member(folder: Path, target: Path, name: str, padding: int) -> None:
    """The folder zipped, with member `name` followed by `padding` newline bytes (deflate: about 1000:1)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for p in sorted(folder.iterdir()):
            if not p.is_file():
                continue
            if p.name != name:
                z.write(p, p.name)
                continue
            info = zipfile.ZipInfo(p.name, (2026, 3, 31, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as w:
                w.write(p.read_bytes())
                chunk = b"\n" * (1 << 20)
                for _ in range(padding >> 20):
                    w.write(chunk)
