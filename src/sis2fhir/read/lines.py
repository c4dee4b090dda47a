"""An export file's bytes as text lines for csv.reader: decoded a block at a time, damaged lines reported and blanked.

csv.reader is fed a chain of io.StringIO blocks, which is C code all the way on clean text (as fast as reading a
TextIOWrapper). Only a block that does not decode as UTF-8, or that holds a NUL byte, is split and decoded line by
line: each damaged line is handed to `on_damage` (line, character, what) and replaced by an empty line, so line
numbers stay true and only that line's row is lost. Line ends are those of csv with newline="": LF, CRLF and CR.

After the last line comes one sentinel line (`END`): a quoted field still open at the end of the file reads into
it, which is how a quote that is never closed is told from one that closes on a later line (see csvfile.py). The
last blocks are kept, so that a row found to be a broken quote can be re-read from the line after its first.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, BinaryIO

BLOCK = 1 << 16  # bytes decoded at a time
MAX_LINE_BYTES = 1 << 20  # a longer physical line is not a row of any SIS export: reported and skipped
KEPT_BLOCKS = 6  # blocks kept for re-reading lines: more than two values of csv's field limit
END = "\x00\n"  # the sentinel line after the last one (a real NUL never reaches csv: its line is blanked)

# Files that are not text at all, by their first bytes (Excel and archives renamed .csv, UTF-16 "Unicode Text").
_MAGIC = {
    b"PK\x03\x04": "a zip or .xlsx file",
    b"\xd0\xcf\x11\xe0": "an Excel .xls file",
    b"%PDF": "a PDF file",
    b"\x1f\x8b": "a gzip file",
    b"\xff\xfe": "UTF-16 text",
    b"\xfe\xff": "UTF-16 text",
}


@dataclass(frozen=True, slots=True)
class Damage:
    """A physical line that could not be read as text."""

    line: int
    code: str  # invalid-utf8 | nul-byte | field-too-large
    position: int  # 1-based character of the line where the damage is (0: the line as a whole)
    what: str  # e.g. "byte 0xE9"; never the line's content
    text: str  # the line with bad bytes replaced (only to find which column it is in; never reported)


def not_text(head: bytes) -> str:
    """Why a file whose first bytes are `head` is not text at all ("" when it looks like text)."""
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return f"it is {kind}, not CSV text"
    sample = head[:65536]
    if not sample:
        return ""
    controls = sum(sample.count(bytes([c])) for c in range(32) if c not in (9, 10, 13))
    if controls * 10 > len(sample):
        return f"{controls} of its first {len(sample)} bytes are control characters, so it is not text"
    return ""


def count_lines(text: str) -> int:
    """Physical lines in `text` as csv counts them (LF, CRLF or CR; a last line without an end counts)."""
    n = text.count("\n")
    if "\r" in text:
        n += text.count("\r") - text.count("\r\n")
    if text and text[-1] not in "\r\n":
        n += 1
    return n


def _position(raw: bytes, byte: int) -> int:
    return len(raw[:byte].decode("utf-8", "replace")) + 1


def decode_block(data: bytes, first_line: int, keep_line: int = 0) -> tuple[str, list[Damage]]:
    """The block as text, each line that is not UTF-8 or holds a NUL replaced by an empty line (`keep_line`, the
    header, is kept with bad bytes replaced), and what was damaged."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if "\x00" not in text:
            return text, []
    out: list[str] = []
    damages: list[Damage] = []
    for i, raw in enumerate(data.splitlines(keepends=True)):
        line = first_line + i
        try:
            t = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = raw.decode("utf-8", "replace")
            damage = Damage(line, "invalid-utf8", _position(raw, exc.start), f"byte 0x{raw[exc.start]:02X}", shown)
        else:
            if "\x00" not in t:
                out.append(t)
                continue
            damage = Damage(line, "nul-byte", t.index("\x00") + 1, "a NUL byte", t)
        damages.append(damage)
        out.append(damage.text.replace("\x00", "") if line == keep_line else "\n")
    return "".join(out), damages


class TextLines:
    """The lines of a binary stream (already at the first byte to read, whose line number is `first_line`)."""

    def __init__(
        self,
        stream: BinaryIO | io.BufferedIOBase,
        first_line: int,
        on_damage: Callable[[Damage], None],
        header: bool = False,
    ) -> None:
        self._stream = stream
        self._first_line = first_line
        self._on_damage = on_damage
        self._keep_line = first_line if header else 0
        self._sniff = header
        self.not_text = ""  # why the file is not text, once the first block is read
        self.end_line = 0  # the sentinel's line number, once the end is reached
        self.unterminated = False  # the last line has no line end (a file cut short, or written without one)
        self._blocks: deque[tuple[int, int, str]] = deque(maxlen=KEPT_BLOCKS)  # (first line, lines, text)
        self._split: tuple[int, list[str]] = (0, [])  # the last block split into lines (for re-reading)
        self._current: Iterator[str] = iter(())
        self._gen = self._read()

    def reader(self, replay: Sequence[str] = ()) -> Any:
        """A csv reader over `replay` then the lines not yet read (its line_num counts from 0)."""
        if not replay:
            return csv.reader(chain(self._current, chain.from_iterable(self._gen)))
        return csv.reader(chain(replay, self._current, chain.from_iterable(self._gen)))

    def lines(self, first: int, last: int) -> list[str] | None:
        """Lines `first`..`last` again (the sentinel included), or None when they are no longer kept."""
        out: list[str] = []
        for start, n, text in self._blocks:
            if start + n <= first or start > last:
                continue
            if self._split[0] != start or not self._split[1]:
                self._split = (start, io.StringIO(text, newline="").readlines())
            out += self._split[1][max(0, first - start) : last - start + 1]
        if self.end_line and first <= self.end_line <= last:
            out.append(END)
        return out if len(out) == last - first + 1 else None

    def close(self) -> None:
        self._gen.close()
        self._stream.close()

    def _block(self, data: bytes, line: int) -> Iterator[io.StringIO]:
        text, damages = decode_block(data, line, self._keep_line)
        for d in damages:
            self._on_damage(d)
        self._blocks.append((line, count_lines(text), text))
        block = io.StringIO(text, newline="")
        self._current = block
        yield block

    def _read(self) -> Generator[io.StringIO]:
        stream, line, carry = self._stream, self._first_line, b""
        skipping = False  # inside a line longer than MAX_LINE_BYTES
        first = True
        while True:
            data = stream.read(BLOCK)
            if first:
                first = False
                if data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
                if self._sniff and (reason := not_text(data)):
                    self.not_text = reason
                    return
            if not data:
                break
            if skipping:  # drop the rest of an overlong line; it reads as an empty one
                ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
                if not ends:
                    continue
                cut = min(ends) + 1
                if data[cut - 1 : cut + 1] == b"\r\n":
                    cut += 1
                data, skipping = data[cut:], False
                yield from self._block(b"\n", line)
                line += 1
                if not data:
                    continue
            if carry:
                data, carry = carry + data, b""
            cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
            if cut == 0:
                if len(data) <= MAX_LINE_BYTES:
                    carry = data
                    continue
                shown = data[: 1 << 17].decode("utf-8", "replace")  # enough to tell the column (csvfile.py)
                self._on_damage(Damage(line, "field-too-large", 0, f"more than {MAX_LINE_BYTES} bytes", shown))
                skipping = True
                continue
            if cut < len(data):
                data, carry = data[:cut], data[cut:]
            yield from self._block(data, line)
            line += self._blocks[-1][1]
        if skipping:
            yield from self._block(b"\n", line)
            line += 1
        elif carry:
            self.unterminated = not carry.endswith((b"\n", b"\r"))
            yield from self._block(carry, line)
            line += self._blocks[-1][1]
        self.end_line = line
        self._current = io.StringIO(END, newline="")
        yield self._current
