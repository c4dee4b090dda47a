"""The SubscriptionTopics a client can subscribe to: one canonical URL per attendance trigger (transitions.py),
served as R4 Basic resources wrapping a SubscriptionTopic (the R5 Backport IG's cross-version extensions), and
the filters each topic can be narrowed by. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sis2fhir.transitions import Trigger

CANONICAL: Final = "http://sis2fhir.org/fhir"  # profiles/sushi-config.yaml canonical
TOPIC_BASE: Final = f"{CANONICAL}/SubscriptionTopic"
R5: Final = "http://hl7.org/fhir/5.0/StructureDefinition"
TOPIC_VERSION: Final = "1.0.0"


@dataclass(frozen=True, slots=True)
class Topic:
    trigger: Trigger  # attendance_events.trigger
    title: str
    description: str

    @property
    def url(self) -> str:
        return f"{TOPIC_BASE}/{self.trigger.value}"

    @property
    def basic_id(self) -> str:
        return f"topic-{self.trigger.value}"

    @property
    def setting(self) -> str:
        """The name of its switch in notify.triggers (notify_config.TriggerSettings)."""
        return self.trigger.value.replace("-", "_")


TOPICS: Final = (
    Topic(
        Trigger.INTO_CHRONIC,
        "Student became chronically absent",
        "The student's absence rate at a school crossed the policy's chronic-absence threshold upward (a student "
        "with too few days in membership is not judged). Once per crossing.",
    ),
    Topic(
        Trigger.BACK_BELOW,
        "Student no longer chronically absent",
        "The student's absence rate at a school fell back below the chronic-absence threshold. Once per crossing.",
    ),
    Topic(
        Trigger.TIER_CHANGED,
        "Attendance tier changed",
        "The student's attendance tier at a school (satisfactory, at risk, moderate, severe) changed.",
    ),
    Topic(
        Trigger.CONSECUTIVE_ABSENCES,
        "Consecutive school days absent",
        "The student was absent a number of school days in a row (by the school calendar, days in membership "
        "only; 3 unless configured). Once per streak.",
    ),
    Topic(
        Trigger.EARLY_WARNING,
        "Projected to become chronically absent",
        "Not chronically absent yet, but the rate of the last school days applied to the days left in the year "
        "puts the year-end rate at or above the threshold. Once per warning.",
    ),
)
BY_URL: Final = {t.url: t for t in TOPICS}
BY_ID: Final = {t.basic_id: t for t in TOPICS}

# filter key -> what it names (SubscriptionTopic.canFilterBy); the forms each takes are checked in
# service/subscriptions.py
FILTERS: Final = {
    "patient": "The student: Patient/<id> or <id> of a Patient this client can read.",
    "school": "The school: Organization/<id> of a school this client can read, or its identifier "
    "(<system>|<value> or <value>, the school's sourcedId).",
}


def topic_basic(topic: Topic) -> dict[str, Any]:
    """The topic as an R4 Basic resource (backport IG: a SubscriptionTopic carried by cross-version extensions)."""
    trigger = [
        {"url": "description", "valueMarkdown": topic.description},
        {"url": "resource", "valueUri": "http://hl7.org/fhir/StructureDefinition/Observation"},
        {"url": "supportedInteraction", "valueCode": "create"},
        {"url": "supportedInteraction", "valueCode": "update"},
    ]
    can_filter = [
        {
            "url": f"{R5}/extension-SubscriptionTopic.canFilterBy",
            "extension": [
                {"url": "description", "valueMarkdown": description},
                {"url": "resource", "valueUri": "Observation"},
                {"url": "filterParameter", "valueString": key},
            ],
        }
        for key, description in FILTERS.items()
    ]
    shape = {
        "url": f"{R5}/extension-SubscriptionTopic.notificationShape",
        "extension": [
            {"url": "resource", "valueUri": "Observation"},
            {"url": "include", "valueString": "Observation:patient"},
        ],
    }
    return {
        "resourceType": "Basic",
        "id": topic.basic_id,
        "meta": {"profile": [f"{R5}/profile-SubscriptionTopic"]},
        "extension": [
            {"url": f"{R5}/extension-SubscriptionTopic.url", "valueUri": topic.url},
            {"url": f"{R5}/extension-SubscriptionTopic.version", "valueString": TOPIC_VERSION},
            {"url": f"{R5}/extension-SubscriptionTopic.name", "valueString": topic.setting},
            {"url": f"{R5}/extension-SubscriptionTopic.title", "valueString": topic.title},
            {"url": f"{R5}/extension-SubscriptionTopic.status", "valueCode": "active"},
            {"url": f"{R5}/extension-SubscriptionTopic.description", "valueMarkdown": topic.description},
            {"url": f"{R5}/extension-SubscriptionTopic.resourceTrigger", "extension": trigger},
            *can_filter,
            shape,
        ],
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
    }
