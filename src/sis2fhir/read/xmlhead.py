"""What an export's XML file is, from its start: the root element, its namespace, a DTD, or why it does not parse.

Ed-Fi interchanges are plain XML: a root in an Ed-Fi namespace (http://ed-fi.org/<version>) and no DTD. A file
with a DOCTYPE is refused before any parser sees it, because a parser expands the entities a DTD declares (a
"billion laughs" file is a few hundred bytes that expand to gigabytes), even in the root's attributes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sis2fhir.read.export import Export

EDFI_NAMESPACES = ("http://ed-fi.org/", "https://ed-fi.org/")
HEAD_BYTES = 1 << 16  # the prolog (declaration, comments, a DTD) comes before the root, within this
_ELEMENT_START = re.compile(rb"<(?![?!/])")


@dataclass(frozen=True, slots=True)
class XmlHead:
    name: str
    root: str  # local name of the root element ("" when not known)
    namespace: str  # of the root ("" when none)
    problem: str = ""  # why the file is not read: "is not well-formed XML at line 3, column 5 (...)" etc.
    line: int = 0  # where the problem is (0: the file as a whole)


def parse_problem(exc: ET.ParseError) -> tuple[int, str]:
    """(line, what) for an XML parse error, e.g. (3, "is not well-formed XML at line 3, column 5 (mismatched tag)")."""
    line, column = exc.position
    return line, f"is not well-formed XML at line {line}, column {column + 1} ({str(exc).split(': line')[0]})"


def dtd_in(head: bytes) -> tuple[int, str]:
    """(line, what) when the prolog in `head` (a file's first bytes) has a DOCTYPE; (0, "") when it has none."""
    m = _ELEMENT_START.search(head)
    prolog = head[: m.start()] if m else head
    at = prolog.find(b"<!DOCTYPE")
    if at < 0:
        return 0, ""
    entities = b"<!ENTITY" in head
    what = "has a DOCTYPE" + (" with entity declarations" if entities else "")
    return prolog[:at].count(b"\n") + 1, (
        f"{what}; Ed-Fi XML has none, so it is not read (protection against entity expansion)"
    )


def read_head(export: Export, name: str) -> XmlHead:
    """The root of XML file `name` (the DTD check first), or the problem that stops it from being read."""
    with export.open_binary(name) as f:
        head = f.read(HEAD_BYTES)
    line, dtd = dtd_in(head)
    if dtd:
        return XmlHead(name, "", "", dtd, line)
    try:
        with export.open_binary(name) as f:
            for _, elem in ET.iterparse(f, events=("start",)):
                ns, _, root = elem.tag.rpartition("}")
                return XmlHead(name, root, ns.lstrip("{"))
    except ET.ParseError as exc:
        line, what = parse_problem(exc)
        return XmlHead(name, "", "", what, line)
    return XmlHead(name, "", "")


def is_edfi_namespace(namespace: str) -> bool:
    """Whether a root's namespace is Ed-Fi's (none at all is taken for Ed-Fi: the root's name says it)."""
    return not namespace or namespace.startswith(EDFI_NAMESPACES)
