"""The example district's NDJSON output, byte for byte: a refactoring that changes one byte of what recipients
get fails here. The digests were recorded from the release before the issue 6 work (commit 89dafb6) and are the
same after it, re-recorded for issue 8 (absence-rate naming, A/N flag, policy as method, issued, status, security
labels, Consent source). Re-record them only for a deliberate change of the output, and say so in the commit:
`scripts/record-example-digest.sh`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from sis2fhir.cli import app
from tests.support import paths

ROOT = paths.ROOT
DIGESTS = paths.FIXTURES / "example-output.sha256"


def test_the_example_district_output_is_byte_identical_to_the_recorded_digest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sync", str(ROOT / "examples" / "district"), "--as-of", "2026-03-31",
                                      "--out", str(out), "--workers", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    got = {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.glob("*/*.ndjson"))
    }
    expected = dict(reversed(line.split("  ", 1)) for line in DIGESTS.read_text().splitlines() if line.strip())
    assert got == expected
