"""A CSV file's header row resolved to the columns a reader needs: typos, duplicates, blanks, missing columns."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

# Header misspellings seen in real OneRoster exports (lepo-project, moodle-enrol_oneroster test data).
KNOWN_TYPOS: dict[str, str] = {
    "datalastmodified": "dateLastModified",
    "prefferedgivenname": "preferredGivenName",
    "prefferedmiddlename": "preferredMiddleName",
    "prefferedfamilyname": "preferredFamilyName",
    "userid": "userIds",
    "grade": "grades",
    "agents": "agentSourcedIds",
}


@dataclass(frozen=True, slots=True)
class Columns:
    """A reader's needs from a file: `required` (rows useless without) and `expected` (warn if absent)."""

    required: tuple[str, ...]
    expected: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # known columns, read when present, no warning when absent
    aliases: dict[str, str] = field(default_factory=dict)  # lower-case other name -> column (no warning)
    one_of: tuple[str, ...] = ()  # at least one of these must be present


def resolve_header(
    raw: list[str], spec: Columns, file: str, warn: Callable[[int, str, str, str], None], found: bool = True
) -> tuple[list[str], dict[str, int], list[str]]:
    """(name of each header column, our column -> position, required columns not found); warnings go to `warn`.

    `found`: False when the file has no header row at all (then an absent expected column is not warned about)."""
    columns: dict[str, int] = {}
    wanted = {c.lower(): c for c in (*spec.required, *spec.expected, *spec.optional, *spec.one_of)}
    names: list[str] = []
    unknown: dict[str, int] = {}
    empty: list[int] = []
    for i, cell in enumerate(raw):
        h = cell.replace("\ufeff", "").strip()
        low = h.lower()
        if not h:
            empty.append(i)
            names.append("")
            continue
        name = wanted.get(low) or spec.aliases.get(low)
        if name is None and low in KNOWN_TYPOS and KNOWN_TYPOS[low].lower() in wanted:
            name = KNOWN_TYPOS[low]
            warn(1, h, "header-typo", f"Column '{h}' is read as '{name}'. Correct the header.")
        if name is None:
            unknown[h] = i
            names.append(h)  # extra columns (metadata.*, ext_*) are kept under their own name
            continue
        if name in columns:
            warn(1, h, "duplicate-column", f"Column '{h}' appears twice; the first one is used.")
            names.append(h)
            continue
        columns[name] = i
        names.append(name)
    for col in spec.required + spec.expected:
        if col in columns:
            continue
        close = difflib.get_close_matches(col.lower(), [u.lower() for u in unknown], n=1, cutoff=0.85)
        if close:
            orig = next(u for u in unknown if u.lower() == close[0])
            i = unknown.pop(orig)
            columns[col] = i
            names[i] = col
            warn(1, orig, "header-typo", f"Column '{orig}' is read as '{col}'. Correct the header.")
    if empty and any(names[i] for i in range(empty[0], len(names))):
        where = ", ".join(str(i + 1) for i in empty)
        warn(1, "", "empty-column-name", f"Header columns {where} have no name; their values are ignored.")
    missing = [c for c in spec.required if c not in columns]
    if spec.one_of and not any(c in columns for c in spec.one_of):
        missing.append(" or ".join(spec.one_of))
    for col in spec.expected:
        if col not in columns and found:
            warn(1, col, "missing-column", f"{file} has no '{col}' column; it is read as blank.")
    return names, columns, missing
