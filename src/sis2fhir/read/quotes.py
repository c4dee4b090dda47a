"""RFC 4180 quoting in one line of CSV: where a quote is broken, and the fields of a damaged line."""

from __future__ import annotations

import csv

FIELD_LIMIT = csv.field_size_limit()  # csv's own limit (131072 characters): a longer value costs its row


def quoted_field_start(row: list[str]) -> bool:
    """Whether a parsed row may hide a stray quote (a value holding a comma or a quote): the cheap test first."""
    return any("," in f or '"' in f for f in row)


def broken_quote_field(text: str) -> int | None:
    """The index of the field of a line in which a quoted value starts that is not closed on the line, or that is
    closed and followed by something other than a comma or the line end (RFC 4180); None when quoting is sound."""
    i, n, field, start = 0, len(text.rstrip("\r\n")), 0, True
    while i < n:
        c = text[i]
        if start and c == '"':
            close = i + 1
            while True:
                close = text.find('"', close)
                if close < 0 or close >= n:
                    return field  # open to the end of the line
                if text[close + 1 : close + 2] == '"':
                    close += 2
                    continue
                break
            if close + 1 < n and text[close + 1] != ",":
                return field
            i, start = close + 1, False
            continue
        if c == ",":
            field, start = field + 1, True
        else:
            start = False
        i += 1
    return None


def fields_of(text: str) -> list[str]:
    """A damaged line's fields as far as they can be read (a NUL reads as U+FFFD, like a bad byte)."""
    text = text.replace("\x00", "\ufffd").rstrip("\r\n")
    for t in (text, text[: FIELD_LIMIT - 1]):
        try:
            return next(csv.reader([t]), [])
        except csv.Error:
            continue
    return text.split(",")
