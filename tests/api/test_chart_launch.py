"""The chart opened by a SMART App Launch (EHR launch, SMART 2) in real headless Chromium: the test EHR
(tests/support/smart_ehr.py) checks PKCE S256, `state` and `aud`, and its FHIR side is a real FHIR server holding
the Patient; the chart shows the numbers of the Observation Riverside holds, its bars and threshold line are found
in a screenshot by their colours, and a patient not consented to Riverside gets no chart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, select

from sis2fhir.present.chart_svg import COLOURS
from sis2fhir.store.schema import disclosures
from tests.support.chart_district import ChartDistrict, chart_district
from tests.support.chromium import browser, decode_png, hex_colour


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory, fhir_server: str) -> Iterator[ChartDistrict]:
    with chart_district(tmp_path_factory.mktemp("launch"), fhir_server) as found:
        yield found


def launch_url(district: ChartDistrict, patient_id: str) -> str:
    query = urlencode({"iss": district.ehr.fhir_base, "launch": district.ehr.new_launch(patient_id)})
    return f"{district.url}/app/launch?{query}"


def component(observation: dict[str, Any], code: str) -> float:
    return next(
        float(c["valueQuantity"]["value"]) for c in observation["component"] if c["code"]["coding"][0]["code"] == code
    )


def chart_views(district: ChartDistrict) -> int:
    engine = create_engine(district.store_url)
    try:
        with engine.connect() as conn:
            return len(list(conn.scalars(select(disclosures.c.id).where(disclosures.c.channel == "smart-app"))))
    finally:
        engine.dispose()


def test_a_launch_shows_the_chart_with_the_observations_numbers(district: ChartDistrict, tmp_path: Any) -> None:
    observation = district.consented_observation
    views = chart_views(district)
    with browser() as chromium:
        context = chromium.new_context(viewport={"width": 900, "height": 900})
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        answer = page.goto(launch_url(district, district.consented))
        assert answer is not None and answer.status == 200
        assert page.url == f"{district.url}/app/chart"  # nothing personal in the address
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        [authorized] = district.ehr.authorized
        assert authorized["code_challenge_method"] == "S256" and authorized["aud"] == district.ehr.fhir_base
        assert district.ehr.refusals == []
        [cookie] = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/app"
        assert all(u.startswith((district.url, district.ehr.root)) for u in requested)

        totals = page.locator("#numbers tfoot td").all_inner_texts()
        assert totals[0] == f"{component(observation, 'days-in-membership'):g}"
        assert totals[1] == f"{component(observation, 'days-absent'):g}"
        assert totals[2] == f"{component(observation, 'days-absent-excused'):g}"
        assert totals[3] == f"{component(observation, 'days-absent-unexcused'):g}"
        assert totals[4] == f"{component(observation, 'days-absent-illness'):g}"
        assert totals[5] == f"{component(observation, 'days-absent-oss'):g}"
        assert totals[6] == f"{observation['valueQuantity']['value']:g} %"
        assert observation["interpretation"][0]["coding"][0]["display"] in page.inner_text("dl.facts")
        assert observation["performer"][0]["display"] in page.inner_text("h2")

        month_rows = page.locator("#numbers tbody tr").count()
        assert month_rows >= 7  # August to March: the monthly tallies the sync recorded
        screenshot = page.screenshot(full_page=True)
        (tmp_path / "chart.png").write_bytes(screenshot)
        pixels = decode_png(screenshot)
        bars = page.locator("rect.bar").all()
        assert bars, "no bars drawn"
        for bar in bars:
            kind = (bar.get_attribute("class") or "").split()[1]
            box = bar.bounding_box()
            assert box is not None
            assert pixels.count(hex_colour(COLOURS[kind]), box) >= 0.6 * box["width"] * box["height"], kind
        line = page.locator("#threshold line").bounding_box()
        assert line is not None and pixels.count(hex_colour(COLOURS["threshold"]), line) > line["width"]
    assert chart_views(district) == views + 1  # the chart is in the FERPA log


def test_no_chart_for_a_patient_not_consented_to_the_ehrs_organization(district: ChartDistrict) -> None:
    views = chart_views(district)
    with browser() as chromium:
        page = chromium.new_page()
        for patient in (district.not_consented, district.unknown):
            answer = page.goto(launch_url(district, patient))
            assert answer is not None and answer.status == 200
            assert page.locator("svg").count() == 0 and page.locator("#numbers").count() == 0
            assert "No school attendance is shared" in page.inner_text("body")
    assert chart_views(district) == views


def test_discovery_falls_back_to_the_capability_statement(district: ChartDistrict) -> None:
    district.ehr.advertise_well_known = False
    try:
        with browser() as chromium:
            page = chromium.new_page()
            answer = page.goto(launch_url(district, district.consented))
            assert answer is not None and answer.status == 200 and page.locator("#numbers").count() == 1
    finally:
        district.ehr.advertise_well_known = True


def test_a_forged_state_an_unknown_ehr_and_a_missing_session_are_refused(district: ChartDistrict) -> None:
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        started = client.get(launch_url(district, district.consented))
        assert started.status_code == 302
        query = parse_qs(urlsplit(started.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["aud"] == [district.ehr.fhir_base]
        assert len(query["state"][0]) >= 32
        authorized = client.get(started.headers["location"])  # the EHR approves, redirecting back with a code
        code = parse_qs(urlsplit(authorized.headers["location"]).query)["code"][0]
        forged = client.get(f"{district.url}/app/callback", params={"code": code, "state": "forged"})
        assert forged.status_code == 400
        assert client.get(f"{district.url}/app/chart").status_code == 401  # the launch never completed
    stranger = urlencode({"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
    assert httpx.get(f"{district.url}/app/launch?{stranger}").status_code == 403
    assert httpx.get(f"{district.url}/app/chart").status_code == 401  # no session cookie
