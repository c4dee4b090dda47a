"""Real headless Chromium (the Debian package, /usr/bin/chromium: scripts/install-chromium.sh) driven by
Playwright, never `playwright install`; and the pixels of its PNG screenshots, decoded here (8-bit RGB or RGBA,
not interlaced, as Chromium writes them) so that a test can look for a colour where an element is drawn."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def browser() -> Iterator[Any]:
    """A Playwright Browser on the system's Chromium (the test fails, saying how to install it, without)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/install-chromium.sh (as root)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield found
        finally:
            found.close()


@dataclass(frozen=True)
class Pixels:
    width: int
    height: int
    rows: list[bytes]  # RGB(A) bytes per row
    channels: int

    def at(self, x: float, y: float) -> tuple[int, int, int]:
        xi, yi = min(self.width - 1, max(0, int(x))), min(self.height - 1, max(0, int(y)))
        i = xi * self.channels
        r, g, b = self.rows[yi][i : i + 3]
        return r, g, b

    def count(self, colour: tuple[int, int, int], box: dict[str, float], tolerance: int = 24) -> int:
        """Pixels within `tolerance` (per channel) of the colour inside the box {x, y, width, height}."""
        found = 0
        for y in range(int(box["y"]), int(box["y"] + box["height"]) + 1):
            for x in range(int(box["x"]), int(box["x"] + box["width"]) + 1):
                if all(abs(a - b) <= tolerance for a, b in zip(self.at(x, y), colour, strict=True)):
                    found += 1
        return found


def hex_colour(text: str) -> tuple[int, int, int]:
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def decode_png(data: bytes) -> Pixels:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, "only 8-bit RGB(A), not interlaced"
    channels = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return Pixels(width, height, rows, channels)
