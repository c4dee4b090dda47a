"""The FERPA Consent as a receiver reads it: the signed form it rests on, and the labels that travel with it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sis2fhir import terminology as t
from sis2fhir.map.consent import ferpa_consent, url_path
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


# URLs as consents.csv has them, and everything urlsplit strips, removes or splits off
_URL_PARTS = st.sampled_from(
    ["https://", "http://", "HTTPS://", "s3+x.y-z://", "urn:", "//", "/", "forms", "CNS-1", ".pdf", ".PDF", ".tiff",
     ".", "?v=2", "#page=1", "[::1]", "[", "]", "user:pw@", ":8443", " ", "\t", "\n", "\x00", "%20", "é",
     "consents.example.org"]
)  # fmt: skip


@given(st.lists(_URL_PARTS, max_size=8).map("".join))
def test_the_path_of_a_form_url_is_the_path_urlsplit_finds(url: str) -> None:
    try:
        expected: str | type[ValueError] = urlsplit(url).path
    except ValueError:  # an unbalanced bracketed host: url_path fails as urlsplit does
        expected = ValueError
    try:
        got: str | type[ValueError] = url_path(url)
    except ValueError:
        got = ValueError
    assert got == expected


def test_a_plain_form_url_is_read_without_urlsplit_and_a_query_with_it() -> None:
    assert url_path("https://consents.example.org/forms/CNS-1.pdf") == "/forms/CNS-1.pdf"
    assert url_path("https://consents.example.org") == ""  # a host and no path: no file name to go by
    assert url_path("https://consents.example.org/forms/CNS-1.pdf?v=2") == "/forms/CNS-1.pdf"
