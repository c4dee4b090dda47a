"""SMART v2 system scopes, as the API grants and checks them (SMART App Launch 2.x, scopes-and-launch-context).

A scope is `system/<Type>.<permissions>`, the permissions a subset of c r u d s in that order (`system/Observation.rs`:
read and search). SMART v1 scopes are taken as their v2 meaning (`.read` = `.rs`, `.write` = `.cud`, `.*` = `.cruds`).
Pure functions; layer 0, so that the configuration checks the scopes it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

# What this server can grant: the resources it serves (read, search), and Subscription (create, read, update,
# delete, search: the R5 Backport Subscriptions of api/subscriptions.py).
SUPPORTED: Final = (
    "system/Patient.rs",
    "system/Observation.rs",
    "system/Consent.rs",
    "system/Organization.rs",
    "system/Subscription.cruds",
)
PERMISSION_ORDER: Final = "cruds"
_V1: Final = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^system/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perms>[a-z*]+)$")

Grants = dict[str, frozenset[str]]  # resource type -> permission letters


def parse_scope(scope: str) -> tuple[str, frozenset[str]] | None:
    """(resource type or "*", permissions) of one system scope, or None when it is not one (a user/, patient/ or
    launch scope, a v2 scope with query parameters, a misspelling)."""
    m = _SCOPE.match(scope)
    if m is None:
        return None
    perms = _V1.get(m["perms"], m["perms"])
    if not perms or any(p not in PERMISSION_ORDER for p in perms):
        return None
    if "".join(sorted(perms, key=PERMISSION_ORDER.index)) != perms or len(set(perms)) != len(perms):
        return None  # v2 letters come once each, in the order c r u d s
    return m["type"], frozenset(perms)


def _grants(scopes: Iterable[str]) -> Grants:
    grants: Grants = {}
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is not None:
            grants[parsed[0]] = grants.get(parsed[0], frozenset()) | parsed[1]
    return grants


SUPPORTED_GRANTS: Final = _grants(SUPPORTED)


def check_configured(scopes: str) -> str:
    """A client's configured scopes, space separated, each one this server can grant; ValueError naming the
    first that is not. Returned normalised to v2 (`system/Observation.read` -> `system/Observation.rs`)."""
    for scope in scopes.split():
        parsed = parse_scope(scope)
        if parsed is None or parsed[0] == "*":
            raise ValueError(f"{scope!r} is not a SMART system scope such as system/Observation.rs")
        allowed = SUPPORTED_GRANTS.get(parsed[0])
        if allowed is None or not parsed[1] <= allowed:
            raise ValueError(f"{scope!r} is not one this server grants: {', '.join(SUPPORTED)}")
    if not scopes.split():
        raise ValueError(f"no scope given: name what the client may do, e.g. {' '.join(SUPPORTED[:3])}")
    return render(_grants(scopes.split()))


def render(grants: Mapping[str, frozenset[str]]) -> str:
    """Grants as a scope string, in the order of SUPPORTED (types outside it after, by name)."""
    order = [s.partition(".")[0].removeprefix("system/") for s in SUPPORTED]
    types = sorted(grants, key=lambda t: (order.index(t) if t in order else len(order), t))
    return " ".join(f"system/{t}.{''.join(p for p in PERMISSION_ORDER if p in grants[t])}" for t in types if grants[t])


def granted(requested: str, configured: str) -> str:
    """What a token may carry: the requested scopes cut down to what the client is configured for (a request of
    `system/*.rs` gets every configured type's r and s). Empty when nothing is left (the request is refused)."""
    allowed = _grants(configured.split())
    wanted = _grants(requested.split())
    result: Grants = {}
    for rtype, perms in allowed.items():
        asked = wanted.get(rtype, frozenset()) | wanted.get("*", frozenset())
        if asked & perms:
            result[rtype] = asked & perms
    return render(result)


def allows(scope: str, required: str) -> bool:
    """True when the scopes of a token (`scope`) hold every permission the one `required` names."""
    need = parse_scope(required)
    if need is None:
        raise ValueError(f"{required!r} is not a SMART system scope such as system/Observation.rs")
    have = _grants(scope.split())
    return need[1] <= have.get(need[0], frozenset())
