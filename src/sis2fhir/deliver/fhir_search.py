"""FHIR search values: identifiers written into search URLs (conditional updates, If-None-Exist, Patient searches).

FHIR R4 search, "Escaping Search Parameters": in a parameter value `,` separates alternatives, `|` a token's
system from its code and `$` the parts of a composite; a value that holds one of them, or `\\`, must carry it as
`\\,` `\\|` `\\$` `\\\\`. Unescaped, the state id "S,1" would search for "S" or "1": a conditional update could
overwrite another student's Observation and a link search could find another student's Patient.

What sekmet-fhir 0.1.1 (the test server) does with them (seen in its fhir/search.py): it splits a value on
unescaped `,` and takes `\\,` `\\|` `\\$` `\\\\` to the character, then splits each alternative on unescaped `|`
and unescapes once more. So one escaped special character in a value is found exactly, as is a `\\` before an
ordinary character; a `\\` directly before `,` `|` `$` or at the end of a value is unescaped twice and not found
(a server bug; HAPI unescapes once). Percent-encoding comes on top and is undone by the server first.
"""

from __future__ import annotations

from typing import Final

_ESCAPES: Final = str.maketrans({"\\": "\\\\", ",": "\\,", "|": "\\|", "$": "\\$"})


def search_escape(value: str) -> str:
    """`value` with `\\` `,` `|` `$` each preceded by `\\` (FHIR R4 search escaping)."""
    return value.translate(_ESCAPES)


def identifier_token(system: str, value: str) -> str:
    """The token search value `system|value` for an identifier, both parts escaped (not yet URL-encoded)."""
    return f"{search_escape(system)}|{search_escape(value)}"
