"""What makes a zip unsafe to read (traversal, duplicates, encryption, methods, bomb sizes), and reads that fail
as ExportError naming the member (bad CRC, damaged data)."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from sis2fhir.config import ZipLimits
from sis2fhir.errors import ExportError

# What reading a damaged member raises: a bad CRC-32 (at the end of the member), broken deflate/bzip2/lzma data,
# a member cut short, or the disk failing under a folder export.
READ_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, zlib.error, EOFError, OSError)

# Compression methods zipfile can read here (bzip2 and LZMA only when Python was built with them).
_READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
try:
    import bz2  # noqa: F401

    _READABLE_METHODS[zipfile.ZIP_BZIP2] = "bzip2"
except ImportError:  # pragma: no cover - a Python built without bz2
    pass
try:
    import lzma

    _READABLE_METHODS[zipfile.ZIP_LZMA] = "lzma"
    READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass
_METHOD_NAMES = {
    9: "Deflate64 (Windows Explorer uses it for large files)",
    93: "zstd",
    95: "xz",
    96: "JPEG",
    98: "PPMd",
    99: "AES encryption",
}


class Guarded(io.BufferedIOBase):
    """A member's bytes; a read that fails (bad CRC, damaged data, I/O error) raises ExportError naming it.

    zipfile checks the CRC-32 only when a member has been read to its end, so the error can surface anywhere a
    reader streams (in a forked tally worker too: ExportError pickles, and the pool re-raises it here)."""

    def __init__(self, raw: Any, what: str) -> None:
        super().__init__()
        self._raw = raw
        self._what = what

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except READ_ERRORS as exc:
            raise damaged(self._what, exc) from None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with self._guard():
            return self._raw.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        with self._guard():
            return self._raw.read1(size) if hasattr(self._raw, "read1") else self._raw.read(size)

    def readinto(self, buffer: Any) -> int:
        with self._guard():
            return self._raw.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        with self._guard():
            return self._raw.readline(-1 if size is None else size)

    def seekable(self) -> bool:
        return bool(self._raw.seekable())

    def seek(self, offset: int, whence: int = 0) -> int:
        with self._guard():
            return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def damaged(what: str, exc: BaseException) -> ExportError:
    if isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile) and exc.strerror:
        return ExportError(f"{what} cannot be read: {exc.strerror}. Check the disk and the file's permissions.")
    reason = "bad CRC-32" if "CRC" in str(exc) else f"damaged data: {type(exc).__name__}"
    return ExportError(f"{what} cannot be read ({reason}): the file is damaged. Download or export it again.")


def check_zip(path: Path, infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse a zip sis2fhir cannot read safely: encrypted or unreadable members, names that climb out of the
    archive, two members of one name, and sizes that only a zip bomb has."""
    seen: set[str] = set()
    total = 0
    for i in infos:
        name = i.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and len(parts[0]) == 2 and parts[0][1] == ":"):
            raise ExportError(
                f"the zip {path} has a member named {name!r}, a path outside the archive. sis2fhir refuses such "
                "zips: export the district's files again."
            )
        if i.is_dir():
            continue
        if name in seen:
            raise ExportError(
                f"the zip {path} holds two members named {name}; sis2fhir cannot know which one is right. "
                "Export the zip again with one of each file."
            )
        seen.add(name)
        if i.flag_bits & 0x1:
            raise ExportError(f"{name} in the zip {path} is encrypted. Zip the export again without a password.")
        if i.compress_type not in _READABLE_METHODS:
            method = _METHOD_NAMES.get(i.compress_type, f"method {i.compress_type}")
            raise ExportError(
                f"{name} in the zip {path} is compressed with {method}, which sis2fhir cannot read. "
                "Zip the export again with standard Deflate compression."
            )
        total += i.file_size
        if i.file_size >= limits.ratio_from_bytes and i.file_size > limits.max_ratio * max(i.compress_size, 1):
            raise ExportError(
                f"{name} in the zip {path} would expand {i.file_size / max(i.compress_size, 1):,.0f} times "
                f"(limit {limits.max_ratio:,.0f}): refused as a possible zip bomb. If the file is genuine, "
                "raise export.zip_max_ratio in the configuration."
            )
    if total > limits.max_total_bytes:
        raise ExportError(
            f"the zip {path} would expand to {total:,} bytes (limit {limits.max_total_bytes:,}): refused as a "
            "possible zip bomb. If the export is genuine, raise export.zip_max_total_bytes in the configuration."
        )
