"""HL7 v2 over MLLP against a real loopback listener: ACK codes, timeouts, dropped connections, split ACKs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Sequence
from datetime import date, datetime
from typing import TypeVar
from urllib.parse import urlparse

import pytest

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome, deliver_all
from sis2fhir.deliver.mllp import MllpClient, MllpDestination, control_id_of, parse_ack
from sis2fhir.map.oru import V2Settings, build_oru_r01
from sis2fhir.measure import AttendanceSummary
from sis2fhir.records import School, Student
from tests.support import paths
from tests.support.mllp_listener import Answer, MllpListener

pytestmark = pytest.mark.integration

FIXTURES = paths.FIXTURES / "hl7v2"
T = TypeVar("T")

V2 = V2Settings(sending_facility="LEA", receiving_application="HIE", state_id_authority="MDSTATE")
SCHOOL = School(sourced_id="sch-1", name="Lincoln Elementary")


def oru(n: int) -> str:
    summary = AttendanceSummary(
        f"stu-{n}",
        "sch-1",
        2025,
        date(2024, 8, 26),
        date(2025, 2, 28),
        120,
        1250,
        500,
        750,
        0,
        0,
        "moderate-chronic",
    )
    student = Student(sourced_id=f"stu-{n}", state_id=f"S{n}", given_name="Jane", family_name="Doe")
    return build_oru_r01(summary, student, SCHOOL, V2, f"M{n:05d}", datetime(2025, 3, 1, 12, 0))


def item(n: int) -> DeliveryItem:
    return DeliveryItem(
        key=f"key-{n}", recipient="HIE", student_sourced_id=f"stu-{n}", state_student_id=f"S{n}",
        consent_id=f"c-{n}", hl7v2=oru(n),
    )  # fmt: skip


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def deliver_to(listener: MllpListener, items: Sequence[DeliveryItem], **options: float) -> list[DeliveryResult]:
    dest = MllpDestination("127.0.0.1", listener.port, **options)  # type: ignore[arg-type]
    try:
        return await deliver_all(dest, items)
    finally:
        await dest.close()


def by_key(results: Sequence[DeliveryResult]) -> dict[str, DeliveryResult]:
    return {r.key: r for r in results}


def scenario(
    script: dict[int, Answer], items: Sequence[DeliveryItem], **options: float
) -> tuple[list[DeliveryResult], MllpListener]:
    async def go() -> tuple[list[DeliveryResult], MllpListener]:
        async with MllpListener(script) as listener:
            return await deliver_to(listener, items, **options), listener

    return run(go())


def test_mllp_destination_is_a_destination_named_by_its_url() -> None:
    dest = MllpDestination("127.0.0.1", 2575)
    assert isinstance(dest, Destination)
    url = urlparse(dest.name)
    assert (url.scheme, url.hostname, url.port) == ("mllp", "127.0.0.1", 2575)
    assert urlparse(MllpDestination("::1", 2575).name).hostname == "::1"


def test_aa_is_delivered_and_the_receiver_got_the_message_unchanged() -> None:
    results, listener = scenario({}, [item(1)])
    assert results[0].outcome is Outcome.DELIVERED
    assert results[0].disclosed == ["M00001"]
    assert listener.received == [oru(1)]


def test_ae_goes_to_dead_letters_with_the_receivers_error_text() -> None:
    answer = Answer(code="AE", text="Patient not found", error="No patient with PID-3 S1 in the MPI")
    results, _ = scenario({0: answer}, [item(1), item(2)])
    dead, ok = by_key(results)["key-1"], by_key(results)["key-2"]
    assert dead.outcome is Outcome.DEAD
    assert "Patient not found" in dead.detail
    assert "No patient with PID-3 S1 in the MPI" in dead.detail
    assert "Unknown key identifier" in dead.detail  # ERR-3 text
    assert dead.disclosed == []
    assert ok.outcome is Outcome.DELIVERED  # the refused message did not hold up the next one


@pytest.mark.parametrize(
    ("code", "outcome"),
    [("AA", Outcome.DELIVERED), ("CA", Outcome.DELIVERED), ("AE", Outcome.DEAD), ("CE", Outcome.DEAD),
     ("AR", Outcome.RETRY), ("CR", Outcome.RETRY), ("ZZ", Outcome.IN_DOUBT)],
)  # fmt: skip
def test_each_acknowledgment_code(code: str, outcome: Outcome) -> None:
    results, _ = scenario({0: Answer(code=code, text="as the receiver said")}, [item(1)])
    assert results[0].outcome is outcome
    assert code in results[0].detail


def test_ar_is_retried_and_the_rest_of_the_batch_goes_through() -> None:
    results, listener = scenario({0: Answer(code="AR", text="system busy")}, [item(1), item(2), item(3)])
    outcomes = [by_key(results)[f"key-{n}"].outcome for n in (1, 2, 3)]
    assert outcomes == [Outcome.RETRY, Outcome.DELIVERED, Outcome.DELIVERED]
    assert "system busy" in by_key(results)["key-1"].detail
    assert len(listener.received) == 3


def test_ack_timeout_is_retried_and_a_late_ack_is_never_taken_for_the_next_message() -> None:
    # message 1 is answered (AA) only after the client gave up; message 2 must get its own ACK
    results, listener = scenario({0: Answer(delay=2.0)}, [item(1), item(2)], ack_timeout=0.3)
    first, second = by_key(results)["key-1"], by_key(results)["key-2"]
    assert first.outcome is Outcome.IN_DOUBT  # sent, no ACK: the HIE may hold it; sent again later, same MSH-10
    assert "no ACK" in first.detail
    assert second.outcome is Outcome.DELIVERED
    assert second.disclosed == ["M00002"]
    assert listener.connections == 2  # the timed-out connection was closed, not reused


def test_receiver_that_hangs_stops_the_batch_after_three_timeouts() -> None:
    always_slow = Answer(delay=5.0)
    script = dict.fromkeys(range(10), always_slow)
    results, listener = scenario(script, [item(n) for n in range(1, 7)], ack_timeout=0.2)
    assert [r.outcome for r in results] == [Outcome.IN_DOUBT] * 3 + [Outcome.RETRY] * 3
    assert len(listener.received) == 3  # the other three were handed back unsent
    assert all("not sent" in r.detail for r in results[3:])


def test_dropped_connection_is_retried_and_the_client_reconnects() -> None:
    results, listener = scenario({0: Answer(drop=True)}, [item(1), item(2), item(3)])
    outcomes = [by_key(results)[f"key-{n}"].outcome for n in (1, 2, 3)]
    assert outcomes == [Outcome.IN_DOUBT, Outcome.DELIVERED, Outcome.DELIVERED]  # received, never acknowledged
    assert "closed the connection" in by_key(results)["key-1"].detail
    assert listener.connections == 2


def test_receiver_closing_after_each_ack_costs_nothing() -> None:
    # engines that close the connection after every ACK: each message is still delivered once
    script = dict.fromkeys(range(5), Answer(close_after=True))
    results, listener = scenario(script, [item(n) for n in range(1, 6)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 5
    assert listener.received == [oru(n) for n in range(1, 6)]


def test_idle_connection_closed_by_the_receiver_is_reopened() -> None:
    async def go() -> tuple[list[DeliveryResult], list[DeliveryResult], MllpListener]:
        async with MllpListener({0: Answer(close_after=True)}) as listener:
            dest = MllpDestination("127.0.0.1", listener.port)
            first = await deliver_all(dest, [item(1)])
            await asyncio.sleep(0.05)  # the receiver's FIN arrives while the connection is idle
            second = await deliver_all(dest, [item(2)])
            await dest.close()
            return first, second, listener

    first, second, listener = run(go())
    assert first[0].outcome is Outcome.DELIVERED
    assert second[0].outcome is Outcome.DELIVERED
    assert listener.received == [oru(1), oru(2)]


def test_reused_connection_that_dies_before_the_ack_is_tried_once_more_on_a_fresh_one() -> None:
    # the connection carried message 1; it dies while message 2 waits for its ACK (a receiver restart)
    results, listener = scenario({1: Answer(drop=True)}, [item(1), item(2)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert listener.received == [oru(1), oru(2), oru(2)]  # at least once: receivers dedupe on MSH-10
    assert listener.connections == 2


def test_fresh_connection_that_dies_twice_is_retried_later_not_looped() -> None:
    script = {1: Answer(drop=True), 2: Answer(drop=True)}
    results, listener = scenario(script, [item(1), item(2), item(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.IN_DOUBT, Outcome.DELIVERED]
    assert listener.received == [oru(1), oru(2), oru(2), oru(3)]


def test_ack_split_across_tcp_segments_and_preceded_by_noise() -> None:
    script = {
        0: Answer(pieces=7),
        1: Answer(pieces=2, noise=b"\r\n"),
        2: Answer(code="AE", error="bad OBX-5", pieces=4),
    }
    results, _ = scenario(script, [item(1), item(2), item(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED, Outcome.DEAD]
    assert "bad OBX-5" in results[2].detail


def test_many_messages_in_sequence_on_one_connection() -> None:
    items = [item(n) for n in range(1, 301)]
    results, listener = scenario({}, items)
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 300
    assert [r.disclosed[0] for r in results] == [f"M{n:05d}" for n in range(1, 301)]
    assert listener.received == [it.hl7v2 for it in items]
    assert listener.connections == 1


def test_ack_for_another_message_is_retried_and_the_stream_resynchronised() -> None:
    results, listener = scenario({0: Answer(control_id="M99999")}, [item(1), item(2)])
    first, second = results
    assert first.outcome is Outcome.IN_DOUBT
    assert "M99999" in first.detail and "M00001" in first.detail
    assert second.outcome is Outcome.DELIVERED
    assert listener.connections == 2


def test_reply_that_is_not_an_ack_is_retried() -> None:
    results, _ = scenario({0: Answer(raw=b"\x0bHELLO\x1c\r")}, [item(1), item(2)])
    assert results[0].outcome is Outcome.IN_DOUBT
    assert "not an ACK" in results[0].detail
    assert results[1].outcome is Outcome.DELIVERED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_hands_the_whole_batch_back_for_retry() -> None:
    dest = MllpDestination("127.0.0.1", free_port(), connect_timeout=2.0)

    async def go() -> list[DeliveryResult]:
        try:
            return await deliver_all(dest, [item(1), item(2), item(3)])
        finally:
            await dest.close()

    results = run(go())
    assert [r.outcome for r in results] == [Outcome.RETRY] * 3
    assert "cannot connect" in results[0].detail
    assert {r.key for r in results} == {"key-1", "key-2", "key-3"}


def test_poison_items_are_dead_and_do_not_block_the_batch() -> None:
    empty = DeliveryItem("key-empty", "HIE", "stu-x", "Sx", "c-x", hl7v2="")
    framed = DeliveryItem("key-vt", "HIE", "stu-y", "Sy", "c-y", hl7v2=oru(7).replace("Doe", "D\x1coe"))
    results, listener = scenario({}, [empty, framed, item(1)])
    found = by_key(results)
    assert found["key-empty"].outcome is Outcome.DEAD
    assert found["key-vt"].outcome is Outcome.DEAD
    assert found["key-1"].outcome is Outcome.DELIVERED
    assert listener.received == [oru(1)]


def test_message_stored_with_lf_line_ends_goes_out_with_cr() -> None:
    lf = DeliveryItem("key-lf", "HIE", "stu-1", "S1", "c-1", hl7v2=oru(1).replace("\r", "\n") + "\n")
    results, listener = scenario({}, [lf])
    assert results[0].outcome is Outcome.DELIVERED
    assert listener.received == [oru(1)]


def named(n: int, family: str, v2: V2Settings) -> DeliveryItem:
    summary = AttendanceSummary(
        f"stu-{n}", "sch-1", 2025, date(2024, 8, 26), date(2025, 2, 28), 120, 0, 0, 0, 0, 0, "satisfactory"
    )
    student = Student(sourced_id=f"stu-{n}", state_id=f"S{n}", given_name="José", family_name=family)
    message = build_oru_r01(summary, student, SCHOOL, v2, f"M{n:05d}", datetime(2025, 3, 1, 12, 0))
    return DeliveryItem(f"key-{n}", "HIE", f"stu-{n}", f"S{n}", f"c-{n}", hl7v2=message)


def test_names_go_out_in_the_character_set_msh18_declares() -> None:
    utf8 = named(1, "Müller", V2)  # MSH-18 UNICODE UTF-8 (the default)
    latin1 = named(2, "Müller", V2.model_copy(update={"character_set": "8859/1"}))
    ascii_only = named(3, "Müller", V2.model_copy(update={"character_set": "ASCII"}))
    results, listener = scenario({}, [utf8, latin1, ascii_only, item(4)])
    found = by_key(results)
    assert found["key-1"].outcome is Outcome.DELIVERED
    assert found["key-2"].outcome is Outcome.DELIVERED
    assert found["key-3"].outcome is Outcome.DEAD  # "ü" has no ASCII form: the HIE could not read it
    assert "ASCII" in found["key-3"].detail
    assert found["key-4"].outcome is Outcome.DELIVERED
    assert b"M\xc3\xbcller^Jos\xc3\xa9" in listener.frames[0]
    assert b"M\xfcller^Jos\xe9" in listener.frames[1]
    assert len(listener.frames) == 3


# --- real ACKs from an HL7 v2 engine (oehf/ipf, Apache-2.0; see fixtures/hl7v2/README.md) -------------


def canned(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


@pytest.mark.parametrize(
    ("fixture", "outcome", "says"),
    [
        ("ipf-pcd01-response-ACK-AA.hl7", Outcome.DELIVERED, "AA"),
        ("ipf-pcd01-response-invalid-ACK-AA.hl7", Outcome.DELIVERED, "Message Accepted"),
        ("ipf-pixquery-err-2-ACK-AR-with-ERR.hl7", Outcome.RETRY, "Unable to resolve requested domains"),
    ],
)
def test_real_acks(fixture: str, outcome: Outcome, says: str) -> None:
    results, _ = scenario({0: Answer(canned=canned(fixture))}, [item(1), item(2)])
    assert results[0].outcome is outcome
    assert says in results[0].detail
    assert results[1].outcome is Outcome.DELIVERED


def test_real_ar_ack_reads_its_escaped_text_and_err_segment() -> None:
    ack = parse_ack(canned("ipf-pixquery-err-2-ACK-AR-with-ERR.hl7"))
    assert ack is not None
    assert (ack.code, ack.control_id) == ("AR", "10501108")
    assert ack.text == "Unable to resolve requested domains in QPD-4: ^^^NONEXISTING, ^^^&1.2.3.4&ISO"
    assert ack.errors == ["QPD-1-4-2: 204 Unknown key identifier"]


def test_real_aa_ack_with_crlf_segment_ends() -> None:
    ack = parse_ack(canned("ipf-pcd01-response-invalid-ACK-AA.hl7"))
    assert ack is not None
    assert (ack.code, ack.control_id, ack.text) == ("AA", "MSGID1234", "Message Accepted")


def test_v23_err_segment_and_missing_msa() -> None:
    ack = parse_ack("MSH|^~\\&|A|B|C|D|20250301||ACK|1|P|2.3\rMSA|AE|X1|Bad\rERR|PID^1^5^101&Required field missing")
    assert ack is not None
    assert ack.errors == ["PID-1-5: 101 Required field missing"]
    assert ack.detail() == "AE: Bad; PID-1-5: 101 Required field missing"
    assert parse_ack("MSH|^~\\&|A|B|C|D|20250301||ADT^A01|1|P|2.5\rPID|1") is None


def test_control_id_of() -> None:
    assert control_id_of(oru(42)) == "M00042"
    assert control_id_of("") == ""
    assert control_id_of("PID|1") == ""


def test_client_reads_a_frame_larger_than_one_segment() -> None:
    big_text = "x" * 200_000  # far more than one TCP segment or one read

    async def go() -> str:
        async with MllpListener({0: Answer(text=big_text, pieces=3)}) as listener:
            client = MllpClient("127.0.0.1", listener.port, ack_timeout=10.0)
            try:
                return await client.send(oru(1))
            finally:
                await client.close()

    reply = run(go())
    ack = parse_ack(reply)
    assert ack is not None and ack.text == big_text
