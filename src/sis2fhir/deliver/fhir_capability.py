"""The up-front check of a FHIR recipient: its CapabilityStatement must say FHIR 4.0.x with the transaction
interaction, conditional update on every type we send, and, where it states a referencePolicy, that it takes the
logical references (by identifier) we send; else nothing is sent (misconfigured) or its items wait (unreachable).

sekmet-fhir 0.1.1 (the test server) lists every type with conditionalUpdate true and referencePolicy
[literal, logical, local]; HAPI lists conditionalUpdate per type and no referencePolicy by default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx

from sis2fhir.deliver.base import RecipientMisconfigured, RecipientUnreachable
from sis2fhir.deliver.fhir_bundle import json_body
from sis2fhir.deliver.smart_auth import SmartAuthError

# every resource sis2fhir sends is a conditional update on its business identifier (fhir_bundle.py)
SENT_TYPES: Final = ("Observation", "Consent")


async def read_capabilities(client: httpx.AsyncClient, base_url: str, timeout: float) -> dict[str, Any]:
    """Read {base}/metadata; raise RecipientMisconfigured unless FHIR 4.0.x with transaction, else return it."""
    url = f"{base_url}/metadata"
    try:
        response = await client.get(url)
    except SmartAuthError as e:
        raise RecipientMisconfigured(f"{url}: {e}") from None
    except httpx.TimeoutException:
        raise RecipientUnreachable(f"{url} did not answer within {timeout:g} s") from None
    except httpx.TransportError as e:
        raise RecipientUnreachable(f"{url} could not be reached ({type(e).__name__})") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise RecipientUnreachable(f"{url} answered {response.status_code}")
    body = json_body(response)
    if response.status_code != 200 or not isinstance(body, dict):
        raise RecipientMisconfigured(
            f"{url} answered {response.status_code}, not a CapabilityStatement: is this a FHIR base URL?"
        )
    if body.get("resourceType") != "CapabilityStatement":
        raise RecipientMisconfigured(f"{url} answered a {body.get('resourceType')}, not a CapabilityStatement")
    version = str(body.get("fhirVersion", ""))
    if not version.startswith("4.0."):
        raise RecipientMisconfigured(f"the server speaks FHIR {version or '(unstated)'}, sis2fhir sends R4 4.0.1")
    interactions = {
        i.get("code")
        for rest in body.get("rest") or []
        if rest.get("mode", "server") == "server"
        for i in rest.get("interaction") or []
    }
    if "transaction" not in interactions:
        raise RecipientMisconfigured("the server's CapabilityStatement does not list the transaction interaction")
    check_resources(body)
    return body


def check_resources(capabilities: Mapping[str, Any]) -> None:
    """RecipientMisconfigured, with advice, unless each type we send is listed with `conditionalUpdate: true` and,
    where it gives a `referencePolicy`, with `logical` in it."""
    listed: dict[str, Mapping[str, Any]] = {}
    for rest in capabilities.get("rest") or []:
        if rest.get("mode", "server") != "server":
            continue
        for resource in rest.get("resource") or []:
            if isinstance(resource, dict) and resource.get("type") in SENT_TYPES:
                listed.setdefault(str(resource["type"]), resource)
    without = [t for t in SENT_TYPES if listed.get(t, {}).get("conditionalUpdate") is not True]
    if without:
        raise RecipientMisconfigured(
            f"the server's CapabilityStatement does not state conditionalUpdate: true for {', '.join(without)}; "
            "sis2fhir sends every resource as a conditional update on its business identifier (re-sends must "
            "update, never duplicate): ask the recipient to enable conditional update for these types"
        )
    refusing = [
        t
        for t in SENT_TYPES
        if isinstance(listed[t].get("referencePolicy"), list) and "logical" not in listed[t]["referencePolicy"]
    ]
    if refusing:
        raise RecipientMisconfigured(
            f"the server's referencePolicy for {', '.join(refusing)} does not include 'logical'; sis2fhir refers "
            "to the school and district Organizations by identifier: ask the recipient to accept logical "
            "references, or to register the Organizations so that they can be referred to literally"
        )
