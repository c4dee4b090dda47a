"""The request log shows no value that could be a student's (ids, query values) and the last net answers an
unexpected exception with a 500 OperationOutcome, no traceback, in one log line naming only the type and place."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sis2fhir.api.request_log import RequestLog, shown_params, shown_path


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/fhir/Patient/84414298-a7e5-5697-aaa5-e2f8bc303a75", "/fhir/Patient/{id}"),
        ("/fhir/Observation", "/fhir/Observation"),
        ("/fhir/Patient/_search", "/fhir/Patient/_search"),
        ("/fhir/Group/1582147033/$export", "/fhir/Group/{id}/$export"),
        ("/fhir/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"),
        ("/fhir/1000314187", "/fhir/{id}"),
        ("/fhir/stu-0000003", "/fhir/{id}"),
    ],
)
def test_the_logged_path_keeps_the_apis_words_only(path: str, shown: str) -> None:
    assert shown_path(path) == shown


def test_the_logged_query_names_the_parameters_without_values() -> None:
    query = "identifier=urn%3Aoid%3A1%7C1000314187&_count=3&identifier=x&name%20%3Cscript%3E=1"
    assert shown_params(query) == "identifier,_count,?"


async def _boom(request: Request) -> Response:
    raise RuntimeError("stu-0000003 1000314187 would be in this message")


def test_an_unexpected_exception_is_a_500_operation_outcome_and_one_line(caplog: pytest.LogCaptureFixture) -> None:
    # as create_app adds it: inside Starlette's own error middleware, which never sees the exception then
    app = Starlette(routes=[Route("/fhir/Patient/{rid}", _boom)], middleware=[Middleware(RequestLog)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)  # in process: the net is under test

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/fhir/Patient/stu-0000003?identifier=1000314187")

    with caplog.at_level(logging.INFO, logger="sis2fhir.api"):
        r = asyncio.run(call())
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["issue"][0]["code"] == "exception"
    assert "stu-0000003" not in r.text and "Traceback" not in r.text
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "sis2fhir.api"]
    assert lines[-1].startswith("GET /fhir/Patient/{id}?identifier 500 ")
    assert "unhandled RuntimeError" in lines[0] and "would be in this message" not in lines[0]
    assert not any("stu-0000003" in line or "1000314187" in line for line in lines)
