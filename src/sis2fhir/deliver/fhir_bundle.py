"""FHIR transaction Bundles: each resource a conditional update on its business identifier, items packed into
bundles, and the transaction-response read back (where each resource was stored, which entry was refused)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Outcome
from sis2fhir.deliver.fhir_search import identifier_token

PATIENT_REFERENCE_FIELDS = ("subject", "patient")  # Observation.subject, Consent.patient
# Where servers name the failing entry of a refused transaction: HAPI puts "Bundle.entry[3]" in
# issue.location/expression; others say "Entry 3" in diagnostics. sekmet-fhir 0.1.1 names neither.
ENTRY_IN_PATH = re.compile(r"Bundle\.entry\[(\d+)\]")
ENTRY_IN_TEXT = re.compile(r"\b[Ee]ntry\s*(?:#|\[)?\s*(\d+)\b")


@dataclass(slots=True)
class Prepared:
    """An item ready to send: its bundle entries, subject references rewritten to the linked Patient."""

    item: DeliveryItem
    entries: list[dict[str, Any]]


class Refused(Exception):
    """An item that cannot be sent as it is (the outcome says whether for good)."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def conditional_update(resource: dict[str, Any]) -> dict[str, Any]:
    """The transaction entry `PUT {type}?identifier=system|value` for `resource` (changed in place: no id), with
    its `fullUrl`.

    R4 (Bundle.entry.fullUrl, http.html#transaction) wants a fullUrl on every entry but a create's, consistent
    with the resource's id unless it is a urn:uuid. The server picks the id of a conditional update, so we cannot
    know its absolute URL: the entry gets a urn:uuid, derived from the business identifier (the same on every
    resend), as in the R4 example transaction's conditional update. Strict servers refuse entries without one."""
    rtype = resource.get("resourceType")
    identifiers = [i for i in resource.get("identifier") or [] if i.get("system") and i.get("value")]
    if not rtype or not identifiers:
        raise Refused(Outcome.DEAD, f"a {rtype or 'resource'} without identifier system and value cannot be sent")
    ident = identifiers[0]
    # The server picks the id: a conditional update whose body id differs from the match is a 400.
    resource.pop("id", None)
    if isinstance(resource.get("meta"), dict):
        resource["meta"].pop("versionId", None)
    # escaped for FHIR search (fhir_search.py), then URL-encoded: the system keeps its ':' and '/', the
    # separating '|' stays as it is
    token = identifier_token(str(ident["system"]), str(ident["value"]))
    url = f"{rtype}?identifier={quote(token, safe=':/|')}"
    return {"fullUrl": entry_urn(rtype, token), "resource": resource, "request": {"method": "PUT", "url": url}}


def entry_urn(resource_type: str, token: str) -> str:
    """A urn:uuid for the entry of `resource_type` with this identifier token: stable, and one per identifier."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{resource_type}?identifier={token}')}"


def rounds(ready: list[Prepared]) -> list[list[Prepared]]:
    """Items in rounds in which no conditional URL comes twice; a round is sent once the one before has been
    answered.

    The same Observation goes to every recipient of a student; when two recipients share a FHIR server, their
    items carry the same conditional URL (and fullUrl). In one transaction R4 fails overlapping identities
    (http.html#transaction; bdl-7: fullUrl unique), and sekmet-fhir resolves both conditional URLs before either
    runs and creates the resource twice; in two transactions at once, a server that runs them in parallel can
    create it twice. In a later round the second finds the first."""
    out: list[list[Prepared]] = []
    taken: list[set[str]] = []
    for prepared in ready:
        mine = {e["request"]["url"] for e in prepared.entries}
        k = next((n for n, urls in enumerate(taken) if urls.isdisjoint(mine)), len(out))
        if k == len(out):
            out.append([])
            taken.append(set())
        out[k].append(prepared)
        taken[k] |= mine
    return out


def pack(ready: list[Prepared], bundle_size: int) -> list[list[Prepared]]:
    """Whole items into bundles of at most bundle_size resources (a bigger item goes alone)."""
    bundles: list[list[Prepared]] = []
    current: list[Prepared] = []
    size = 0
    for prepared in ready:
        n = len(prepared.entries)
        if current and size + n > bundle_size:
            bundles.append(current)
            current, size = [], 0
        current.append(prepared)
        size += n
    if current:
        bundles.append(current)
    return bundles


def delivered(batch: list[Prepared], body: Any, status: int) -> list[DeliveryResult]:
    """The results of a 2xx answer to a transaction: delivered where the entry says where it stored each resource."""
    sent = sum(len(p.entries) for p in batch)
    answers = body.get("entry") if isinstance(body, dict) and body.get("resourceType") == "Bundle" else None
    if not isinstance(answers, list) or len(answers) != sent:
        detail = (
            f"the server answered {status} but no readable transaction-response with {sent} entries; "
            "resending is safe (conditional updates)"
        )
        return [DeliveryResult(p.item.key, Outcome.IN_DOUBT, detail) for p in batch]
    results = []
    offset = 0
    for prepared in batch:
        mine = answers[offset : offset + len(prepared.entries)]
        offset += len(prepared.entries)
        disclosed = []
        for entry, answer in zip(prepared.entries, mine, strict=True):
            version = versioned_reference(entry["resource"]["resourceType"], answer)
            if version:
                disclosed.append(version)
        if len(disclosed) == len(prepared.entries):
            results.append(DeliveryResult(prepared.item.key, Outcome.DELIVERED, f"{status}", disclosed))
        else:
            detail = f"the server answered {status} but not every entry says where it stored the resource"
            results.append(DeliveryResult(prepared.item.key, Outcome.IN_DOUBT, detail, disclosed))
    return results


def same_content(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether the server holds what we sent: every element we sent, as we sent it. The server assigns id and meta;
    the Patient reference is the one linking gave, so only its identifier is compared."""
    for name, value in sent.items():
        if name in ("id", "meta", "text"):
            continue
        if name in PATIENT_REFERENCE_FIELDS and isinstance(value, dict) and "identifier" in value:
            held = stored.get(name)
            if not isinstance(held, dict) or held.get("identifier", value["identifier"]) != value["identifier"]:
                return False
            continue
        if stored.get(name) != value:
            return False
    return True


def versioned_reference(resource_type: str, answer: Mapping[str, Any]) -> str:
    """Where a transaction-response entry says the resource was stored: "Type/id/_history/v" (or "" if not)."""
    response = answer.get("response") or {}
    if not str(response.get("status", "")).startswith("2"):
        return ""
    location = str(response.get("location", ""))
    parts = location.split("/")
    if resource_type in parts:
        i = parts.index(resource_type)
        tail = parts[i : i + 4]
        if len(tail) == 4 and tail[2] == "_history":
            return "/".join(tail)
        if len(tail) >= 2:
            version = _etag_version(str(response.get("etag", "")))
            return f"{resource_type}/{tail[1]}/_history/{version}" if version else f"{resource_type}/{tail[1]}"
    resource = answer.get("resource") or {}
    if resource.get("id"):
        version = str((resource.get("meta") or {}).get("versionId") or _etag_version(str(response.get("etag", ""))))
        return f"{resource_type}/{resource['id']}" + (f"/_history/{version}" if version else "")
    return ""


def _etag_version(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def failing_entry(oo: Mapping[str, Any] | None) -> int | None:
    """The index of the entry an OperationOutcome names as refused, when it names one."""
    if not oo:
        return None
    for issue in oo.get("issue") or []:
        if issue.get("severity") not in ("error", "fatal"):
            continue
        for path in [*(issue.get("expression") or []), *(issue.get("location") or [])]:
            found = ENTRY_IN_PATH.search(str(path))
            if found:
                return int(found.group(1))
        found = ENTRY_IN_TEXT.search(str(issue.get("diagnostics", "")))
        if found:
            return int(found.group(1))
    return None


def outcome_text(oo: Mapping[str, Any]) -> str:
    texts = []
    for issue in oo.get("issue") or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code", "")
        texts.append(f"{issue.get('severity', 'error')}: {text}")
    return "; ".join(texts)[:500]


def json_body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
