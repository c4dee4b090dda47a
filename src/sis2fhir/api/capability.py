"""The server's CapabilityStatement (GET /fhir/metadata, no token needed): FHIR R4 4.0.1, JSON, the four resource
types with read and search-type and the search parameters the store answers, Subscription (R5 Backport) with its
topics and Basic (the topics), Bulk Data $export (system and Group), and the SMART Backend Services security (the
token endpoint from api.smart)."""

from __future__ import annotations

from typing import Any, Final

from sis2fhir.api.smart import security_extension
from sis2fhir.config import Settings
from sis2fhir.map.notification import SUBSCRIPTION_PROFILE
from sis2fhir.map.topics import TOPICS

BULK: Final = "http://hl7.org/fhir/uv/bulkdata"
SP: Final = "http://hl7.org/fhir/SearchParameter"

# type -> (name, type, definition): what ServedStore.search answers (subject:identifier and patient:identifier
# are the :identifier modifier on a reference parameter, not parameters of their own)
_COMMON: Final = (("_id", "token", f"{SP}/Resource-id"), ("_lastUpdated", "date", f"{SP}/Resource-lastUpdated"))
SEARCH_PARAMS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "Patient": (("identifier", "token", f"{SP}/Patient-identifier"), *_COMMON),
    "Observation": (
        ("patient", "reference", f"{SP}/clinical-patient"),
        ("subject", "reference", f"{SP}/Observation-subject"),
        ("code", "token", f"{SP}/clinical-code"),
        ("date", "date", f"{SP}/clinical-date"),
        ("identifier", "token", f"{SP}/clinical-identifier"),
        *_COMMON,
    ),
    "Consent": (
        ("patient", "reference", f"{SP}/clinical-patient"),
        ("status", "token", f"{SP}/Consent-status"),
        ("identifier", "token", f"{SP}/clinical-identifier"),
        *_COMMON,
    ),
    "Organization": (("identifier", "token", f"{SP}/Organization-identifier"), *_COMMON),
}
SERVED_TYPES: Final = tuple(SEARCH_PARAMS)
BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport"
TOPIC_CANONICAL: Final = f"{BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"


def subscription_resources() -> list[dict[str, Any]]:
    """Subscription (backport-subscription, its topics by canonical URL, $status and $events) and Basic (the
    topics, as the R5 Backport IG wraps a SubscriptionTopic for R4)."""
    return [
        {
            "extension": [{"url": TOPIC_CANONICAL, "valueCanonical": t.url} for t in TOPICS],
            "type": "Subscription",
            "supportedProfile": [SUBSCRIPTION_PROFILE],
            "interaction": [{"code": c} for c in ("create", "read", "update", "delete", "search-type")],
            "versioning": "versioned",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [{"name": "_id", "type": "token", "definition": f"{SP}/Resource-id"}],
            "operation": [
                {"name": "status", "definition": f"{BACKPORT}/OperationDefinition/backport-subscription-status"},
                {"name": "events", "definition": f"{BACKPORT}/OperationDefinition/backport-subscription-events"},
            ],
        },
        {
            "type": "Basic",
            "supportedProfile": ["http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic"],
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "_id", "type": "token", "definition": f"{SP}/Resource-id"},
                {"name": "code", "type": "token", "definition": f"{SP}/Basic-code"},
            ],
        },
    ]


def capability_statement(settings: Settings, software_version: str, published: str) -> dict[str, Any]:
    """The CapabilityStatement of this server at `api.base_url` (the public base; the FHIR base is base_url/fhir)."""
    security = dict(security_extension(settings))
    security.setdefault(
        "service",
        [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
    )
    resources: list[dict[str, Any]] = [
        {
            "type": rtype,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "versioning": "versioned",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [{"name": n, "type": t, "definition": d} for n, t, d in params],
        }
        for rtype, params in SEARCH_PARAMS.items()
    ]
    resources += subscription_resources()
    resources.append(
        {
            "type": "Group",
            "operation": [{"name": "export", "definition": f"{BULK}/OperationDefinition/group-export"}],
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "sis2fhir",
        "kind": "instance",
        "instantiates": [f"{BULK}/CapabilityStatement/bulk-data"],
        "software": {"name": "sis2fhir", "version": software_version},
        "implementation": {"description": "sis2fhir: consented school attendance", "url": settings.api.fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": security,
                "resource": resources,
                "operation": [{"name": "export", "definition": f"{BULK}/OperationDefinition/export"}],
            }
        ],
    }
