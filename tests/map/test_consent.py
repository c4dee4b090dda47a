"""The FERPA Consent as a receiver reads it: the signed form it rests on, and the labels that travel with it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sis2fhir import terminology as t
from sis2fhir.map.consent import ferpa_consent
from sis2fhir.validate import validate_resource
from tests.support import attendance_items as items

STATE_ID = "S0000000042"


def consent(document_url: str = "") -> dict[str, Any]:
    record = replace(items.consent_record(STATE_ID), document_url=document_url)
    return ferpa_consent(record, items.student(STATE_ID), None, items.DISTRICT)


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("https://consents.example.org/forms/CNS-1.pdf", "application/pdf"),
        ("https://consents.example.org/forms/CNS-1.PDF?version=2", "application/pdf"),
        ("https://consents.example.org/scans/CNS-1.jpeg", "image/jpeg"),
        ("https://consents.example.org/forms/CNS-1", "application/octet-stream"),  # the URL does not say
    ],
)
def test_a_linked_form_is_the_source_with_url_type_and_signing_date(url: str, content_type: str) -> None:
    made = consent(url)

    assert made["sourceAttachment"] == {
        "contentType": content_type,
        "url": url,
        "title": "Signed FERPA consent form",
        "creation": items.YEAR_START.isoformat(),
    }
    assert not [i for i in validate_resource(made, profile=t.CONSENT_PROFILE) if i.severity == "error"]


def test_without_a_document_the_source_says_where_the_form_is_and_invents_no_url() -> None:
    made = consent("")

    source = made["sourceAttachment"]
    assert "url" not in source and "contentType" not in source
    assert source["creation"] == items.YEAR_START.isoformat()
    assert "kept by the school district" in source["title"]
    assert not [i for i in validate_resource(made, profile=t.CONSENT_PROFILE) if i.severity == "error"]


def test_the_consent_carries_restricted_and_no_redisclosure() -> None:
    labels = [(s["system"], s["code"]) for s in consent()["meta"]["security"]]

    assert labels == [(t.V3_CONFIDENTIALITY, "R"), (t.V3_ACT_CODE, "NORDSCLCD")]
