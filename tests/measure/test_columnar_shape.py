"""Which attendance.csv files the columnar engine reads itself (columnar/shape.py): only those whose lines are rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from sis2fhir.columnar import shape

HEADER = b"studentSourcedId,schoolSourcedId,date,category\n"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"a,b,c,d\r\ne,f,g,h\r\n", None),  # CRLF: fine
        (b"a,b,c,d\ne,f,g,h", None),  # no newline at the end: fine
        (b"a,b,c,d\re,f,g,h\n", "it holds a bare carriage return"),
        (b"a,b,c,d\r", "it holds a bare carriage return"),
        (b"abc\r\r\n", "it holds a bare carriage return"),
        (b"a,b,c,d\n\ne,f,g,h\n", "it holds a blank line"),
        (b"a,b,c,d\n\r\n", "it holds a blank line"),
        (b'a,b,"c",d\n', "it holds a quote"),
        (b"a,b,c\x00,d\n", "it holds a NUL byte"),
    ],
)
@pytest.mark.parametrize("chunk", [3, 4, 5, 1 << 20])  # patterns across the chunks read
def test_odd_bytes_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, why: str | None, chunk: int
) -> None:
    monkeypatch.setattr(shape, "CHUNK", chunk)
    path = tmp_path / "attendance.csv"
    path.write_bytes(HEADER + body)
    assert shape.odd_file(path) == why


@pytest.mark.parametrize(
    "header",
    [
        b"\xef\xbb\xbfstudentSourcedId,schoolSourcedId,date,category\n",  # a BOM: the reader strips it
        b"StudentSourcedId,schoolSourcedId,date,category\n",  # another case: the reader resolves it
        b"studentSourcedId,schoolSourcedId,date,category,date\n",  # twice: the reader warns
        b"studentSourcedId,schoolSourcedId,date,category,ext_x\n",  # an extra column
        b"studentIdentifier,schoolSourcedId,date,category\n",  # no studentSourcedId
        b"studentSourcedId,schoolSourcedId,date,category",  # no row at all
    ],
)
def test_a_header_the_reader_must_resolve_goes_to_the_streaming_engine(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "attendance.csv"
    path.write_bytes(header + b"a,b,c,d\n" if header.endswith(b"\n") else header)
    assert shape.odd_file(path) == "its header is not exactly the format's column names"
