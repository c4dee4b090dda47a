"""What an HIE receives over real MLLP (tests/support/mllp_listener.py) from `sis2fhir sync`, parsed with hl7apy
STRICT: MSH-3..6 as configured, OBR-28 naming the consented recipient of each message, OBR-7/8 the period, and the
rate's OBX named as an absence rate."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from typer.testing import CliRunner

from sis2fhir.cli import app
from sis2fhir.terminology import ABSENCE_RATE_DISPLAY, ATTENDANCE_SUMMARY
from tests.end_to_end.test_sync_mllp import listener_in_thread
from tests.support import network, paths

pytestmark = pytest.mark.integration

EXAMPLE = paths.ROOT / "examples" / "district"
AS_OF = "2026-03-31"
runner = CliRunner()


def test_each_message_names_its_consented_recipient_and_the_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in network.env().items():
        monkeypatch.setenv(name, value)
    ref = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    expected: set[tuple[str, str]] = set()  # (recipient, state id) as the FHIR output has them
    starts: set[str] = set()
    for path in (tmp_path / "ref").glob("*/Observation.ndjson"):
        for line in path.read_bytes().splitlines():
            obs = orjson.loads(line)
            expected.add((path.parent.name, obs["subject"]["identifier"]["value"]))
            starts.add(obs["effectivePeriod"]["start"].replace("-", ""))
    with (EXAMPLE / "consents.csv").open(newline="") as f:
        names = {r["recipientOrganization"]: r["recipientName"] for r in csv.DictReader(f)}

    with listener_in_thread({}) as hie:
        res = runner.invoke(app, ["sync", str(EXAMPLE), "--as-of", AS_OF, "--store",
                                  f"sqlite:///{tmp_path / 'state.sqlite'}", "--report", str(tmp_path / "rows.csv"),
                                  "--destination", f"mllp://127.0.0.1:{hie.port}"])  # fmt: skip
        assert res.exit_code == 0, res.output
        received = list(hie.received)

    seen: set[tuple[str, str]] = set()
    with_rate = 0
    for text in received:
        msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        assert msg.validate() is True
        msh = msg.msh
        assert [msh.msh_3.to_er7(), msh.msh_4.to_er7(), msh.msh_5.to_er7(), msh.msh_6.to_er7()] == [
            network.HL7["sending_application"],
            network.HL7["sending_facility"],
            network.HL7["receiving_application"],
            network.HL7["receiving_facility"],
        ]
        result = msg.ORU_R01_PATIENT_RESULT
        obr = result.ORU_R01_ORDER_OBSERVATION.OBR
        recipient = obr.obr_28.xcn_1.to_er7()
        assert obr.obr_28.xcn_2.to_er7() == names[recipient]  # the name the parent consented to
        assert obr.obr_28.xcn_13.to_er7() == "NPI"
        assert obr.obr_7.to_er7() in starts and obr.obr_8.to_er7() == AS_OF.replace("-", "")
        seen.add((recipient, result.ORU_R01_PATIENT.PID.pid_3.cx_1.to_er7()))
        rates = [
            o.OBX
            for o in result.ORU_R01_ORDER_OBSERVATION.ORU_R01_OBSERVATION
            if o.OBX.obx_3.ce_1.to_er7() == ATTENDANCE_SUMMARY
        ]
        assert [o.obx_3.ce_2.to_er7() for o in rates] in ([ABSENCE_RATE_DISPLAY], [])  # none without a day
        with_rate += len(rates)
    assert with_rate > 0
    assert seen == expected  # every consented student x recipient, each message naming its own recipient
