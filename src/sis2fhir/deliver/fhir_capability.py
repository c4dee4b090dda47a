"""The up-front check of a FHIR recipient: its CapabilityStatement must say FHIR 4.0.x with the transaction
interaction, else nothing is sent (misconfigured) or its items wait (unreachable)."""

from __future__ import annotations

from typing import Any

import httpx

from sis2fhir.deliver.base import RecipientMisconfigured, RecipientUnreachable
from sis2fhir.deliver.fhir_bundle import json_body
from sis2fhir.deliver.smart_auth import SmartAuthError


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
    return body
