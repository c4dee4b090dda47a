"""The card's texts, the SVG and the chart page from an Observation as the mapper writes it and monthly tallies;
and the page drawn by real headless Chromium, where the bars and the threshold line are found by their colours."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from sis2fhir.map.observation import Measured, attendance_observation
from sis2fhir.measure import AbsenceTally, summarize
from sis2fhir.policy import Policy, resolve_policy
from sis2fhir.present import card
from sis2fhir.present.chart_page import chart_page
from sis2fhir.present.chart_svg import COLOURS, chart_svg
from sis2fhir.present.facts import UnreadableObservation, facts_of
from sis2fhir.records import MonthTally
from tests.support.attendance_items import DISTRICT, SCHOOL, student
from tests.support.chromium import browser, decode_png, hex_colour

ESSA = resolve_policy("essa")
MONTHS = (  # 90 days in membership, 14 absent: 6 excused (3 of them illness), 7 unexcused, 1 out-of-school suspension
    MonthTally("2025-09", 20, 100, 100, 0, 100, 0),
    MonthTally("2025-10", 22, 300, 200, 100, 100, 0),
    MonthTally("2025-11", 18, 400, 100, 300, 0, 0),
    MonthTally("2025-12", 15, 250, 150, 50, 100, 50),
    MonthTally("2026-01", 15, 350, 50, 250, 0, 50),
)


def observation(policy: Policy = ESSA) -> dict[str, Any]:
    """The mapper's Observation for a student missing 14 of 90 days (the months' totals) at Lincoln Elementary."""
    tally = AbsenceTally(absent=1400, excused=600, unexcused=700, illness=300, oss=100)
    summary = summarize("u-1", SCHOOL.sourced_id, 2026, date(2025, 9, 2), date(2026, 1, 16), 90, tally, policy)
    return attendance_observation(summary, student("1000000001"), SCHOOL, DISTRICT, Measured(policy, {}))


def test_the_card_says_what_the_observation_says() -> None:
    obs = observation()
    facts = facts_of(obs, ESSA, MONTHS)
    assert obs["valueQuantity"]["value"] == 15.56  # 14 / 90, as the mapper rounds it
    assert card.summary(facts) == "Missed 14 of 90 school days this year (15.56 %): chronically absent"
    assert card.indicator(facts) == "critical"
    detail = card.detail(facts)
    assert "Excused: 6 days; unexcused: 7 days" in detail
    assert "Illness: 3 days; out-of-school suspension: 1 days" in detail
    assert "**Lincoln Elementary**" in detail and "2026-01-16" in detail
    assert "January 2026: 3.5 of 15 days" in detail


def test_summary_stays_under_140_characters_and_indicator_follows_the_tier() -> None:
    for absent, tier, wanted in (
        (0, "satisfactory", "info"),
        (600, "at-risk", "warning"),
        (2000, "severe-chronic", "critical"),
    ):
        tally = AbsenceTally(absent=absent, unexcused=absent)
        summary = summarize("u-1", SCHOOL.sourced_id, 2026, date(2025, 9, 2), date(2026, 1, 16), 90, tally, ESSA)
        obs = attendance_observation(summary, student("1"), SCHOOL, DISTRICT, Measured(ESSA, {}))
        facts = facts_of(obs, ESSA)
        assert facts.tier == tier and card.indicator(facts) == wanted
        assert len(card.summary(facts)) < 140


def test_an_early_warning_raises_the_indicator_of_a_student_not_yet_chronic() -> None:
    tally = AbsenceTally(absent=600, unexcused=600)  # 6.67 %: at risk
    summary = summarize("u-1", SCHOOL.sourced_id, 2026, date(2025, 9, 2), date(2026, 1, 16), 90, tally, ESSA)
    obs = attendance_observation(summary, student("1"), SCHOOL, DISTRICT, Measured(ESSA, {}))
    assert card.indicator(facts_of(obs, ESSA, projected_rate=0.12)) == "warning"
    assert "heading for chronic" in card.summary(facts_of(obs, ESSA, projected_rate=0.12))
    assert "heading for chronic" not in card.summary(facts_of(obs, ESSA, projected_rate=0.08))
    assert "Projected year-end absence rate: 12 %" in card.detail(facts_of(obs, ESSA, projected_rate=0.12))


def test_months_that_do_not_add_up_to_the_observation_are_not_drawn() -> None:
    wrong = (*MONTHS[:-1], MonthTally("2026-01", 15, 300, 50, 200, 0, 50))  # half a day short
    facts = facts_of(observation(), ESSA, wrong)
    assert facts.months == ()
    svg = chart_svg(facts)
    assert '<rect class="bar' not in svg and "No monthly figures" in svg


def test_an_observation_without_its_figures_is_unreadable() -> None:
    obs = observation()
    obs["component"] = [c for c in obs["component"] if c["code"]["coding"][0]["code"] != "days-absent-oss"]
    with pytest.raises(UnreadableObservation):
        facts_of(obs, ESSA)
    obs = observation()
    obs["valueQuantity"]["value"] = 3.0  # a rate the days do not give
    with pytest.raises(UnreadableObservation):
        facts_of(obs, ESSA)


def test_the_page_has_no_script_no_external_reference_and_the_same_numbers_in_its_table() -> None:
    page = chart_page([facts_of(observation(), ESSA, MONTHS, 0.2)])
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<td>14</td>" in page  # year to date, days missed
    assert "15.56 %" in page and "Moderate chronic absence" in page and "Lincoln Elementary" in page
    assert page.count("<tr><th scope='row'>20") == 5  # a row per month
    assert "projected year end 20 %" in page


def test_chromium_draws_the_bars_and_the_threshold_line() -> None:
    page_html = chart_page([facts_of(observation(), ESSA, MONTHS)])
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 900, "height": 700})
        page.set_content(page_html)
        pixels = decode_png(page.screenshot(full_page=True))
        # a segment per month and kind with days: excused 5, unexcused 4 (none in September), other 2 (the
        # suspension days counted under neither), illness 3, out-of-school suspension 2
        counts = {k: page.locator(f"rect.bar.{k}").count() for k in ("excused", "unexcused", "other", "illness", "oss")}
        assert counts == {"excused": 5, "unexcused": 4, "other": 2, "illness": 3, "oss": 2}
        for kind in ("excused", "unexcused", "illness", "oss"):
            for bar in page.locator(f"rect.bar.{kind}").all():
                box = bar.bounding_box()
                assert box is not None
                area = box["width"] * box["height"]  # lines may cross a bar: most of it is still its colour
                assert pixels.count(hex_colour(COLOURS[kind]), box) >= 0.6 * area, kind
        line = page.locator("#threshold line").bounding_box()
        assert line is not None
        assert pixels.count(hex_colour(COLOURS["threshold"]), line) > line["width"]  # a solid line across
        rate = page.locator("#rate polyline").bounding_box()
        assert rate is not None and pixels.count(hex_colour(COLOURS["rate"]), rate) > 50
