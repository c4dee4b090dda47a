"""The merge of an NDJSON target and its segments into one file, the last line per resource id, written atomically.

Two passes, so memory holds one position per resource id, not its line (the largest file of a 1M-student district
is about a gigabyte): the first parses every line to find where each id's last line is, the second copies those
lines. The copy is done by the kernel (`os.copy_file_range`), in runs of lines that lie one after the other in a
source; when nothing is dropped, no id repeats and every line was written as the line and a newline (a first sync,
or a run whose resources are all new), the result is the sources one after the other, and each is copied whole.
`compact_all` lets one target's merge go to disk while the next one is read.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import orjson

SEGMENT, PARTIAL = ".seg", ".part"
# a kept line's position, one int per resource id: source index | byte offset | byte size (with its newline) | as
# written (the stripped line and a newline: its bytes can be copied as they are)
FIELD_BITS = 48  # a byte offset or a line's size within a file (256 TB)
FIELD = (1 << FIELD_BITS) - 1
COPY_BLOCK = 1 << 20  # bytes per read and write where the kernel cannot copy between the files itself
NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})  # then read and write


def segments_of(target: Path) -> list[Path]:
    """The target's segments, oldest first."""
    prefix = f".{target.name}."
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(SEGMENT))


def compact_all(targets: Iterable[Path]) -> None:
    """`compact_ndjson` of each target, in order; while one target's merge goes to disk (fsync, rename, segments
    removed, in a thread: it mostly waits for the disk), the next one is read and written. Raises the first OSError
    once the merges under way have finished; the targets not begun by then are left as they are."""
    with ThreadPoolExecutor(1, thread_name_prefix="ndjson-merge") as disk:
        landing: list[Future[None]] = []
        try:
            for target in targets:
                for future in landing:
                    if future.done():
                        future.result()  # a merge that failed to land stops the ones after it
                tmp, segments = _merge_into_temporary(target)
                landing.append(disk.submit(_put_in_place, target, tmp, segments))
        finally:
            for future in landing:
                future.result()


def compact_ndjson(path: Path) -> None:
    """Merge the target and its segments: the last line for each resource id, in first-seen order, stripped of
    surrounding whitespace; lines that are not a JSON object with a string id (damage) are dropped. The new file
    replaces the target atomically; then the segments are removed, oldest first, so a crash in between leaves only
    newer ones, which merge the same again."""
    _put_in_place(path, *_merge_into_temporary(path))


def _merge_into_temporary(path: Path) -> tuple[Path, list[Path]]:
    """The merge of the target and its segments, in a temporary beside it (not yet on disk); and those segments."""
    segments = segments_of(path)
    sources = ([path] if path.exists() else []) + segments
    latest, sizes, as_written = last_lines(sources)
    tmp = path.with_name(f".{path.name}.compact{PARTIAL}")
    try:
        with tmp.open("wb") as out:
            if as_written:  # the merge is the sources one after the other
                for source, size in zip(sources, sizes, strict=True):
                    with source.open("rb") as f:
                        _copy(f.fileno(), out.fileno(), 0, size)
            else:
                _copy_lines_at(sources, latest.values(), out.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, segments


def _put_in_place(path: Path, tmp: Path, segments: list[Path]) -> None:
    """The merged temporary on disk and renamed over the target, then the segments it merged removed, oldest first."""
    try:
        with tmp.open("rb") as f:
            os.fsync(f.fileno())  # the file's data, whichever descriptor wrote it
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    for segment in segments:
        segment.unlink()
    if segments:
        fsync_folder(path.parent)


def last_lines(sources: list[Path]) -> tuple[dict[str, int], list[int], bool]:
    """Each resource id's last line (its position, see FIELD_BITS), in first-seen order; each source's size in bytes;
    and whether the merge keeps every line of every source as it is (none dropped, no id twice, each line written as
    the stripped line and a newline)."""
    latest: dict[str, int] = {}
    sizes = []
    kept, as_written = 0, True
    for i, source in enumerate(sources):
        offset, base = 0, i << (2 * FIELD_BITS + 1)
        with source.open("rb") as f:
            for raw in f:
                line = raw.strip()
                try:
                    resource = orjson.loads(line) if line else None
                except orjson.JSONDecodeError:
                    resource = None
                size = len(raw)
                if isinstance(resource, dict) and isinstance(rid := resource.get("id"), str):
                    clean = size - len(line) == 1 and raw[-1] == 10  # only the newline was stripped
                    latest[rid] = base | offset << (FIELD_BITS + 1) | size << 1 | clean
                    kept += 1
                    as_written = as_written and clean
                else:
                    as_written = False
                offset += size
        sizes.append(offset)
    return latest, sizes, as_written and kept == len(latest)


def _copy_lines_at(sources: list[Path], positions: Iterable[int], out: int) -> None:
    """The lines at these positions, in their order, appended to `out`: a line written as it should be, with the lines
    after it in the same source, copied in one; a line with whitespace around it, stripped and written."""
    fds: dict[int, int] = {}
    run_source, run_start, run_end = -1, 0, 0  # the run of lines to copy, from one source
    stripped: list[bytes] = []  # lines to write before the next run
    try:
        for at in positions:
            i, offset, size = at >> (2 * FIELD_BITS + 1), (at >> (FIELD_BITS + 1)) & FIELD, (at >> 1) & FIELD
            if at & 1 and i == run_source and offset == run_end:
                run_end += size
                continue
            if run_source >= 0:
                _copy(fds[run_source], out, run_start, run_end - run_start)
                run_source = -1
            fd = fds.get(i)
            if fd is None:
                fd = fds[i] = os.open(sources[i], os.O_RDONLY)
            if at & 1:
                _write_all(out, b"".join(stripped))
                stripped.clear()
                run_source, run_start, run_end = i, offset, offset + size
            else:
                stripped.append(os.pread(fd, size, offset).strip() + b"\n")
                if len(stripped) >= 1024:
                    _write_all(out, b"".join(stripped))
                    stripped.clear()
        if run_source >= 0:
            _copy(fds[run_source], out, run_start, run_end - run_start)
        _write_all(out, b"".join(stripped))
    finally:
        for fd in fds.values():
            os.close(fd)


def _copy(src: int, dst: int, offset: int, count: int) -> None:
    """Bytes offset .. offset + count of `src` appended to `dst`: by the kernel where it can, else read and written."""
    while count > 0:
        try:
            n = os.copy_file_range(src, dst, count, offset)
        except OSError as e:
            if e.errno not in NO_KERNEL_COPY:  # e.g. a full disk: the merge stops
                raise
            block = os.pread(src, min(count, COPY_BLOCK), offset)
            _write_all(dst, block)
            n = len(block)
        if n == 0:
            raise OSError(errno.EIO, "an NDJSON file became shorter while it was merged")
        offset, count = offset + n, count - n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_durably(path: Path, lines: Iterable[bytes]) -> None:
    """A new file of these lines, each with a newline, on disk (fsynced) before this returns."""
    with path.open("wb") as f:
        for line in lines:
            f.write(line)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
