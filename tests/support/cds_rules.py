"""The CDS Hooks 2.0 rules a discovery document and a service response must follow, as the HL7/cds-hooks
repository's logical models and invariants state them (no official JSON Schema exists): every check returns the
list of rules broken (empty: conformant), each naming where.

- discovery: `services`, each with `hook`, `id`, `description` (strings), `prefetch` an object of string templates;
- response: `cards` (an array); each card: `summary` required and under 140 characters, `indicator` info |
  warning | critical, `source` with a `label`, `source.url` and `icon` absolute; `links` each with `label`, an
  absolute `url`, `type` absolute | smart, `appContext` only on a smart link; `suggestions` imply
  `selectionBehavior`; a `uuid` a string when present.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

INDICATORS = ("info", "warning", "critical")
LINK_TYPES = ("absolute", "smart")


def _absolute(url: Any) -> bool:
    return isinstance(url, str) and urlsplit(url).scheme in ("http", "https") and bool(urlsplit(url).netloc)


def _string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def discovery_problems(doc: Any) -> list[str]:
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), list):
        return ["discovery: `services` must be an array"]
    out = []
    for i, service in enumerate(doc["services"]):
        where = f"services[{i}]"
        for name in ("hook", "id", "description"):
            if not _string(service.get(name)):
                out.append(f"{where}.{name} is required (a string)")
        prefetch = service.get("prefetch")
        if prefetch is not None and (
            not isinstance(prefetch, dict) or not all(isinstance(v, str) for v in prefetch.values())
        ):
            out.append(f"{where}.prefetch must map keys to query templates (strings)")
    return out


def card_problems(card: Any, where: str) -> list[str]:
    if not isinstance(card, dict):
        return [f"{where} is not an object"]
    out = []
    summary = card.get("summary")
    if not _string(summary):
        out.append(f"{where}.summary is required")
    elif len(summary) >= 140:
        out.append(f"{where}.summary must be under 140 characters ({len(summary)})")
    if card.get("indicator") not in INDICATORS:
        out.append(f"{where}.indicator must be one of {INDICATORS}")
    if "uuid" in card and not _string(card["uuid"]):
        out.append(f"{where}.uuid must be a string")
    if "detail" in card and not isinstance(card["detail"], str):
        out.append(f"{where}.detail must be a (markdown) string")
    source = card.get("source")
    if not isinstance(source, dict) or not _string(source.get("label")):
        out.append(f"{where}.source.label is required")
    else:
        for name in ("url", "icon"):
            if name in source and not _absolute(source[name]):
                out.append(f"{where}.source.{name} must be an absolute URL")
    if card.get("suggestions") and not card.get("selectionBehavior"):
        out.append(f"{where}: suggestions need selectionBehavior")
    for j, link in enumerate(card.get("links") or []):
        at = f"{where}.links[{j}]"
        if not _string(link.get("label")):
            out.append(f"{at}.label is required")
        if not _absolute(link.get("url")):
            out.append(f"{at}.url must be an absolute URL")
        if link.get("type") not in LINK_TYPES:
            out.append(f"{at}.type must be absolute or smart")
        if "appContext" in link and link.get("type") != "smart":
            out.append(f"{at}.appContext is allowed on smart links only")
    return out


def response_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return ["response: `cards` must be an array"]
    out = []
    for i, card in enumerate(body["cards"]):
        out += card_problems(card, f"cards[{i}]")
    return out


def request_problems(body: Any) -> list[str]:
    """The request rule the service relies on: fhirAuthorization implies fhirServer."""
    if isinstance(body, dict) and body.get("fhirAuthorization") and not body.get("fhirServer"):
        return ["request: fhirAuthorization without fhirServer"]
    return []
