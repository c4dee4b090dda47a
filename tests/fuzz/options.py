"""Variants of kinds config, option and gate: bad settings and options, and attendance that is there but implausible."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from tests.fuzz.district import AS_OF, District
from tests.fuzz.files import folder_with
from tests.fuzz.model import Bases, Call, Expect, Variant

NOTHING = "nothing may be sent"
CLOSED = "http://127.0.0.1:9/fhir"  # the discard port: nothing listens, a connection is refused at once


def _config(tag: str, what: str, yaml_text: str | None, expect: Expect, env: dict[str, str] | None = None) -> Variant:
    def build(work: Path, bases: Bases) -> Call:
        args: list[str] = []
        if yaml_text is not None:
            (work / "sis2fhir.yaml").write_text(yaml_text, encoding="utf-8")
            args = ["--config", str(work / "sis2fhir.yaml")]
        return Call(bases.csv, out=work / "out", args=args, env=dict(env or {}))

    return Variant(f"config-{tag}", "config", what, build, expect)


def _dest(line: str, recipient: str = "1729034169") -> str:
    return f'recipients:\n  - identifier: "{recipient}"\n    destinations:\n      - {line}\n'


def config_variants() -> list[Variant]:
    bad = Expect(
        "config", frozenset({1}), why="the configuration is checked when read: exit 1 naming the setting, " + NOTHING
    )
    cases: list[tuple[str, str, str]] = [
        ("port-99999", "an MLLP port of 99999", _dest("{type: mllp, host: 127.0.0.1, port: 99999}")),
        ("port-0", "an MLLP port of 0", _dest("{type: mllp, host: 127.0.0.1, port: 0}")),
        ("port-negative", "an MLLP port of -1", _dest("{type: mllp, host: 127.0.0.1, port: -1}")),
        ("port-text", "an MLLP port of 'abc'", _dest("{type: mllp, host: 127.0.0.1, port: abc}")),
        ("mllp-no-host", "an MLLP destination without a host", _dest("{type: mllp, port: 2575}")),
        ("url-not-url", "a FHIR url 'not a url'", _dest("{type: fhir, url: not a url}")),
        ("url-ftp", "a FHIR url ftp://", _dest("{type: fhir, url: 'ftp://ehr.example.org/fhir'}")),
        ("url-no-host", "a FHIR url http://", _dest("{type: fhir, url: 'http://'}")),
        ("url-space", "a FHIR url with a space in the host", _dest("{type: fhir, url: 'https://exa mple.org/fhir'}")),
        ("url-blank", "a FHIR destination without url", _dest("{type: fhir}")),
        ("url-bad-port", "a FHIR url with port 99999", _dest("{type: fhir, url: 'http://127.0.0.1:99999/fhir'}")),
        ("yaml-unclosed", "YAML that does not parse (an unclosed [)", "recipients: [\n  - identifier: x\n"),
        ("yaml-tab", "YAML indented with a tab", "district:\n\tnamespace: urn:x\n"),
        ("yaml-list", "a YAML list at the top level", "- district\n- policy\n"),
        ("unknown-key", "an unknown top-level key (recipeints)", "recipeints: []\n"),
        ("unknown-destination-key", "hostname instead of host", _dest("{type: mllp, hostname: 127.0.0.1, port: 2575}")),
        ("unknown-district-key", "district.namespaces", "district:\n  namespaces: urn:x\n"),
        ("unknown-policy-key", "policy.threshhold_percent", "policy:\n  threshhold_percent: 12\n"),
        ("threshold-negative", "policy.threshold_percent -5", "policy:\n  threshold_percent: -5\n"),
        ("threshold-text", "policy.threshold_percent abc", "policy:\n  threshold_percent: abc\n"),
        (
            "minimum-days-negative",
            "policy.minimum_days_in_membership -1",
            "policy:\n  minimum_days_in_membership: -1\n",
        ),
        ("unknown-preset", "policy.preset strict", "policy:\n  preset: strict\n"),
        ("bundle-size-0", "bundle_size 0", _dest(f"{{type: fhir, url: '{CLOSED}', bundle_size: 0}}")),
        ("destination-type", "a destination of type smtp", _dest("{type: smtp, host: mail.example.org}")),
        ("recipient-no-id", "a recipient without identifier", "recipients:\n  - destinations: []\n"),
        (
            "missing-env-secret",
            "a bearer token from an environment variable that is not set",
            _dest(
                f"{{type: fhir, url: '{CLOSED}', auth: {{type: bearer, token: 'env:SIS2FHIR_FUZZ_NO_SUCH_SECRET'}}}}"
            ),
        ),
        (
            "missing-key-file",
            "a SMART private key file that does not exist",
            _dest(
                f"{{type: fhir, url: '{CLOSED}', auth: {{type: smart-backend, client_id: c, key_id: k, "
                "private_key: 'file:/nonexistent/sis2fhir.pem'}}"
            ),
        ),
        (
            "literal-secret",
            "a bearer token written into the file (not env: or file:)",
            _dest(f"{{type: fhir, url: '{CLOSED}', auth: {{type: bearer, token: 'abc123'}}}}"),
        ),
        ("store-url-scheme", "store_url notadb://x", "store_url: 'notadb://x'\n"),
    ]
    out = [_config(tag, what, text, bad) for tag, what, text in cases]
    for tag, env in (
        ("env-workers", {"SIS2FHIR_WORKERS": "-3"}),
        ("env-store", {"SIS2FHIR_STORE_URL": "garbage"}),
        ("env-preset", {"SIS2FHIR_POLICY__PRESET": "bogus"}),
        ("env-max-age", {"SIS2FHIR_OUTBOX__MAX_AGE_HOURS": "-1"}),
    ):
        out.append(_config(tag, f"environment {env}", None, bad, env))
    return out


def _option(tag: str, what: str, args: list[str], expect: Expect, **call: object) -> Variant:
    def build(work: Path, bases: Bases) -> Call:
        c = Call(bases.csv, out=work / "out", args=[a.replace("{work}", str(work)) for a in args])
        for k, v in call.items():
            setattr(c, k, v(work) if callable(v) else v)
        return c

    return Variant(f"option-{tag}", "option", what, build, expect)


def option_variants() -> list[Variant]:
    usage = Expect("usage", frozenset({2}), why="a command-line option with a value it cannot take: exit 2, " + NOTHING)
    either = Expect(
        "usage",
        frozenset({1, 2}),
        why="an option naming a destination, a store or a file that cannot be used: exit 2 (usage) or 1 (configuration)"
        ", " + NOTHING,
    )
    out = [
        _option(f"as-of-{i}", f"--as-of {v}", [], usage, as_of=v)
        for i, v in enumerate(("2026-02-30", "yesterday", "31/03/2026"))
    ]
    out += [
        _option("workers-negative", "--workers -1", ["--workers", "-1"], usage),
        _option("workers-very-negative", "--workers -100", ["--workers", "-100"], usage),
        _option("workers-text", "--workers abc", ["--workers", "abc"], usage),
        _option("policy-unknown", "--policy strict", ["--policy", "strict"], usage),
        _option("state-id-unknown", "--state-id bogus", ["--state-id", "bogus"], usage),
        _option("unknown-option", "--frobnicate", ["--frobnicate"], usage),
        _option("nowhere", "neither --out nor --destination", [], usage, out=None),
        _option("no-export", "no export argument", [], usage, export=None),
        _option(
            "destination-port",
            "--destination mllp://127.0.0.1:99999",
            ["--destination", "mllp://127.0.0.1:99999"],
            either,
        ),
        _option("destination-scheme", "--destination gopher://x", ["--destination", "gopher://example.org/x"], either),
        _option("destination-no-host", "--destination https://", ["--destination", "https://"], either),
        _option("config-missing", "--config that does not exist", ["--config", "{work}/none.yaml"], either),
        _option("store-scheme", "--store notadb://x", ["--store", "notadb://x"], either),
        _option(
            "store-no-dir",
            "--store in a folder that does not exist",
            ["--store", "sqlite:////nonexistent-fuzz/x.sqlite"],
            either,
        ),
        _option(
            "as-of-before-year",
            "--as-of 2020-01-01, before every school year",
            [],
            Expect(
                "usage", frozenset({1, 2}), why="no school year contains or precedes the date: exit 1 or 2, " + NOTHING
            ),
            as_of="2020-01-01",
        ),
    ]
    return out


# ---------------------------------------------------------------- gates (issue 6, item 1)


def _rows_where(keep: Callable[[dict[str, str]], bool], change: Callable[[dict[str, str]], None] | None = None):
    def edit(data: bytes) -> bytes:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        buf = io.StringIO()
        w = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            if keep(r):
                if change is not None:
                    change(r)
                w.writerow(r)
        return buf.getvalue().encode("utf-8")

    return edit


def _present(r: dict[str, str]) -> None:
    if "Absence" in r["category"]:
        r.update(category="Present", duration="1", reason="")


def gate_variants(d: District) -> list[Variant]:
    stop = "implausible attendance stops the run before anything leaves (issue 6, item 1): exit 1, " + NOTHING
    gate = Expect("unusable", frozenset({1}), why=stop)
    cal = d.file("calendar.csv")
    passed = sorted(
        r["date"]
        for r in (cal.row(n) for n in cal.data_lines)
        if r["schoolSourcedId"] == "org-school-01" and r["instructional"] == "true" and r["date"] <= AS_OF.isoformat()
    )
    last15, one_day = set(passed[-15:]), passed[-20]
    half = sorted(d.students)[len(d.students) // 2]
    att = "attendance.csv"

    def g(tag: str, what: str, edits: dict, expect: Expect = gate, base: str = "csv", prior: bool = False) -> Variant:
        return Variant(f"gate-{tag}", "gate", what, folder_with(edits, base, prior), expect)

    return [
        g("attendance-absent", "no attendance.csv and no Ed-Fi file", {att: None}),
        g(
            "school-missing",
            "no row at all for org-school-02 (positive file)",
            {att: _rows_where(lambda r: r["schoolSourcedId"] != "org-school-02")},
        ),
        g(
            "last-15-days-missing",
            "no row for the last 15 school days before the as-of date",
            {att: _rows_where(lambda r: r["date"] not in last15)},
        ),
        g(
            "one-day-missing",
            f"no row at all on {one_day}, a passed school day",
            {att: _rows_where(lambda r: r["date"] != one_day)},
        ),
        g(
            "only-after-as-of",
            "only rows dated after the as-of date",
            {att: _rows_where(lambda r: r["date"] > AS_OF.isoformat())},
        ),
        g(
            "exceptions-no-calendar",
            "exception-only attendance without calendar.csv",
            {"calendar.csv": None},
            base="exceptions",
        ),
        g(
            "absences-vanish-after-run",
            "after an accepted run, every absence is now Present",
            {att: _rows_where(lambda r: True, _present)},
            prior=True,
        ),
        g(
            "half-students-after-run",
            "after an accepted run, rows only for the first half of the students",
            {att: _rows_where(lambda r: r["studentSourcedId"] < half)},
            prior=True,
        ),
        g("rerun-same", "the same export again after an accepted run (control)", {}, CLEAN_RERUN, prior=True),
        g(
            "exceptions-valid",
            "the exception-only shape with calendar.csv (control)",
            {},
            CLEAN_SHAPE,
            base="exceptions",
        ),
    ]


CLEAN_RERUN = Expect("clean", frozenset({0}), why="nothing changed: exit 0, 0 changes, the same files")
CLEAN_SHAPE = Expect("clean", frozenset({0}), why="the same absences written as exceptions: identical output")
