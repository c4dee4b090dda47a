"""The $export kick-off parameters (pure) and the splitting of an export's files at the size limit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sis2fhir.api import export_jobs
from sis2fhir.api.bulk_params import EXPORT_TYPES, BadKickOff, parse_kick_off


def test_no_parameters_export_every_type_in_order() -> None:
    kick = parse_kick_off([], lenient=False)
    assert kick.types == EXPORT_TYPES == ("Patient", "Organization", "Observation", "Consent")
    assert kick.since is None


def test_type_lists_add_up_and_keep_the_export_order() -> None:
    kick = parse_kick_off([("_type", "Consent, Observation"), ("_type", "Patient")], lenient=False)
    assert kick.types == ("Patient", "Observation", "Consent")


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
def test_the_ndjson_format_and_its_abbreviations_are_accepted(fmt: str) -> None:
    assert parse_kick_off([("_outputFormat", fmt)], lenient=False).types == EXPORT_TYPES


@pytest.mark.parametrize(
    "params",
    [
        [("_type", "Encounter")],
        [("_type", "Patient,,Consent")],
        [("_outputFormat", "text/csv")],
        [("_since", "2026-03-31")],
        [("_since", "2026-03-31T10:00:00")],  # no time zone
        [("_since", "2026-02-30T10:00:00Z")],  # no such day
        [("_since", "2026-03-31T10:00:00Z"), ("_since", "2026-04-01T10:00:00Z")],
        [("_typeFilter", "Observation?code=x")],
        [("patient", "Patient/1")],
    ],
)
def test_what_the_server_cannot_do_is_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(BadKickOff):
        parse_kick_off(params, lenient=False)


def test_since_is_an_instant_with_its_zone() -> None:
    kick = parse_kick_off([("_since", "2026-03-31T10:00:00.250+02:00")], lenient=False)
    assert kick.since == datetime(2026, 3, 31, 8, 0, 0, 250000, tzinfo=UTC)


def test_lenient_ignores_unsupported_parameters_but_not_bad_values() -> None:
    kick = parse_kick_off([("_typeFilter", "Observation?code=x"), ("_type", "Consent")], lenient=True)
    assert (kick.types, kick.ignored) == (("Consent",), ("_typeFilter",))
    with pytest.raises(BadKickOff):
        parse_kick_off([("_type", "Encounter")], lenient=True)


def test_files_split_at_the_size_limit_per_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_jobs, "FILE_LIMIT", 25)
    files = export_jobs._Files(tmp_path)
    for i in range(3):
        files.add("Patient", b'{"id":"%d","x":"abcdef"}\n' % i)  # 23 bytes: one per file
    files.add("Consent", b'{"id":"c"}\n')
    files.add("Consent", b'{"id":"d"}\n')
    files.close()
    assert [(f.type, f.file, f.count) for f in files.files] == [
        ("Patient", "Patient.ndjson", 1),
        ("Patient", "Patient.2.ndjson", 1),
        ("Patient", "Patient.3.ndjson", 1),
        ("Consent", "Consent.ndjson", 2),
    ]
    assert (tmp_path / "Consent.ndjson").read_bytes() == b'{"id":"c"}\n{"id":"d"}\n'


def test_a_stored_resource_becomes_one_line() -> None:
    assert export_jobs._line(b'{"a":1}') == b'{"a":1}\n'
    assert export_jobs._line(b'{\n  "a": 1\n}\n') == b'{"a":1}\n'
