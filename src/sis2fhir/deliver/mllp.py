"""HL7 v2 over MLLP: an asyncio client (framing, whole-frame ACKs, timeouts, reconnects), its Destination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome

log = logging.getLogger(__name__)

# MLLP (HL7 v2 Appendix C): start block VT, the message, end block FS followed by CR.
VT: Final = b"\x0b"
FS: Final = b"\x1c"
CR: Final = b"\r"
END_BLOCK: Final = FS + CR
MAX_FRAME: Final = 1 << 20  # an ACK is a few hundred bytes; a reply past 1 MiB is not an ACK

DETAIL_LIMIT: Final = 500


class MllpError(Exception):
    """A transport fault: the message may or may not have reached the peer; send it again later."""


class ConnectFailed(MllpError):
    """No TCP connection to the peer (refused, unreachable, or not within the connect timeout)."""


class AckTimeout(MllpError):
    """The peer did not send a whole ACK frame within the ACK timeout."""


class ConnectionLost(MllpError):
    """The peer closed or reset the connection before a whole ACK frame arrived."""


def frame(message: bytes) -> bytes:
    return VT + message + END_BLOCK


class MllpClient:
    """One MLLP connection to one peer, opened on first use and reopened after any fault.

    Exchanges are strictly one at a time: MLLP has no message ids on the wire, so the next frame on the
    connection is taken as the ACK of the message just sent. After a timeout or a malformed reply the
    connection is closed, so that a late ACK can never be read as the answer to the next message.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 10.0,
        ack_timeout: float = 30.0,
        encoding: str = "utf-8",
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.encoding = encoding
        self.connections_opened = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def send(self, message: str, encoding: str | None = None) -> str:
        """Send one message and return the ACK message (the frame's content, decoded).

        UnicodeEncodeError when the message cannot be written in `encoding` (default: the client's).
        """
        payload = frame(message.encode(encoding or self.encoding))
        async with self._lock:
            reused = self._open()
            try:
                return await self._exchange(payload)
            except ConnectionLost:
                if not reused:
                    raise
                # Receivers close idle connections (often after 60 s or so); a stale connection shows up
                # only when we use it. Nothing came back, so send once more on a fresh connection.
                log.debug("mllp %s:%s: stale connection, reconnecting", self.host, self.port)
                return await self._exchange(payload)

    async def reset(self) -> None:
        """Close the connection; the next send reconnects. For replies that leave the stream out of step."""
        async with self._lock:
            await self._drop()

    async def close(self) -> None:
        await self.reset()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_FRAME), self.connect_timeout
            )
        except TimeoutError as exc:
            raise ConnectFailed(f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {_os_reason(exc)}") from exc
        self.connections_opened += 1
        self._reader, self._writer = reader, writer
        return reader, writer

    def _open(self) -> bool:
        """Whether the connection is there and not known to be closed by the peer."""
        reader, writer = self._reader, self._writer
        return not (reader is None or writer is None or reader.at_eof() or writer.is_closing())

    async def _exchange(self, payload: bytes) -> str:
        if not self._open():
            await self._drop()
            await self._connect()
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        try:
            writer.write(payload)
            await writer.drain()
            body = await asyncio.wait_for(self._read_frame(reader), self.ack_timeout)
        except TimeoutError as exc:
            await self._drop()
            raise AckTimeout(f"no ACK from {self.host}:{self.port} within {self.ack_timeout:g} s") from exc
        except asyncio.IncompleteReadError as exc:
            await self._drop()
            raise ConnectionLost(f"{self.host}:{self.port} closed the connection before the ACK") from exc
        except asyncio.LimitOverrunError as exc:
            await self._drop()
            raise MllpError(f"reply from {self.host}:{self.port} has no end block within 1 MiB") from exc
        except OSError as exc:
            await self._drop()
            raise ConnectionLost(f"connection to {self.host}:{self.port} lost: {_os_reason(exc)}") from exc
        return body.decode(self.encoding, errors="replace")

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> bytes:
        while True:
            # readuntil keeps reading across TCP segments until FS CR: an ACK split in pieces is one frame.
            chunk = await reader.readuntil(END_BLOCK)
            start = chunk.find(VT)
            if start >= 0:
                # Bytes before VT (a stray CR LF some senders put between frames) are not part of the frame.
                return chunk[start + 1 : -len(END_BLOCK)]

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --- ACKs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """What a sender needs from an ACK: MSA-1, MSA-2, and the error texts of MSA-3 and the ERR segments."""

    code: str  # MSA-1, HL7 table 0008: AA AE AR (original mode), CA CE CR (enhanced mode)
    control_id: str  # MSA-2: MSH-10 of the message acknowledged
    text: str = ""  # MSA-3 (deprecated since v2.5 but still what many engines fill)
    errors: list[str] = field(default_factory=list)  # one line per ERR segment

    def detail(self) -> str:
        parts = [p for p in (self.text, *self.errors) if p]
        return f"{self.code}: {'; '.join(parts)}" if parts else self.code


_SEGMENT_SPLIT: Final = re.compile(r"\r\n|\r|\n")


class _Delimiters:
    """The delimiters a message declares in MSH-1 and MSH-2, and how to read text written with them."""

    def __init__(self, segments: Sequence[str]) -> None:
        field_sep, enc = "|", "^~\\&"
        for seg in segments:
            if seg.startswith("MSH") and len(seg) >= 8:
                field_sep, enc = seg[3], seg[4:8]
                break
        self.field = field_sep
        chars = (enc + "^~\\&"[len(enc) :])[:4]
        self.component, self.repetition, self.escape, self.sub = chars[0], chars[1], chars[2], chars[3]
        esc = re.escape(self.escape)
        self._pattern = re.compile(f"{esc}([^{esc}]*){esc}")
        self._table = {
            "F": self.field,
            "S": self.component,
            "R": self.repetition,
            "E": self.escape,
            "T": self.sub,
        }

    def unescape(self, value: str) -> str:
        return self._pattern.sub(self._one, value) if self.escape in value else value

    def _one(self, m: re.Match[str]) -> str:
        seq = m.group(1)
        if seq in self._table:
            return self._table[seq]
        if seq.startswith("X") and len(seq) % 2 == 1:
            with contextlib.suppress(ValueError):
                return bytes.fromhex(seq[1:]).decode("latin-1")
        return " " if seq == ".br" else ""

    def coded(self, value: str, sep: str) -> str:
        """A CWE/CE (code^text^system) as a person reads it: "204 Unknown key identifier"."""
        return " ".join(self.unescape(p) for p in value.split(self.repetition)[0].split(sep)[:2] if p)

    def location(self, value: str) -> str:
        """An ERL, or the start of an ELD (segment^sequence^field^...), as "QPD-1-4"."""
        return "-".join(p for p in value.split(self.repetition)[0].split(self.component)[:4] if p)

    def error_text(self, err: list[str]) -> str:
        err = err + [""] * (9 - len(err))
        # v2.5+: ERR-2 location, ERR-3 HL7 error code, ERR-7 diagnostics, ERR-8 user message;
        # v2.3/2.4: ERR-1 (ELD: segment^sequence^field^code&text&system).
        if err[3] or err[7] or err[8]:
            where = self.location(err[2])
            texts = (self.coded(err[3], self.component), self.unescape(err[8]), self.unescape(err[7]))
            what = "; ".join(t for t in texts if t)
        else:
            eld = err[1].split(self.repetition)[0].split(self.component)
            where = self.location(self.component.join(eld[:3]))
            what = self.coded(eld[3], self.sub) if len(eld) > 3 else ""
        return f"{where}: {what}" if where and what else where or what


def parse_ack(text: str) -> Ack | None:
    """Read MSA and ERR from an ACK, tolerant of LF or CRLF segment ends and of v2.3 to v2.8 ERR layouts.

    None when the reply has no MSA segment (it is not an acknowledgement).
    """
    segments = [s for s in _SEGMENT_SPLIT.split(text.strip("\x0b\x1c\r\n ")) if s]
    d = _Delimiters(segments)
    msa = next((s.split(d.field) for s in segments if s.startswith("MSA" + d.field)), None)
    if msa is None:
        return None
    msa += [""] * (4 - len(msa))
    errors = [d.error_text(s.split(d.field)) for s in segments if s.startswith("ERR" + d.field)]
    return Ack(
        code=msa[1].strip().upper(),
        control_id=d.unescape(msa[2].split(d.component)[0]),
        text=d.unescape(msa[3]).strip(),
        errors=[e for e in errors if e],
    )


# MSH-18 (HL7 table 0211) -> Python codec. An empty MSH-18 means ASCII by the standard; the client's own
# encoding (UTF-8 by default) is used then, as engines commonly accept it.
CHARSETS: Final[dict[str, str]] = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
}


def msh_field(message: str, n: int) -> str:
    """MSH-n of an ER7 message ("" when absent); MSH-1 is the field separator itself."""
    if not message.startswith("MSH") or len(message) < 8:
        return ""
    fields = _SEGMENT_SPLIT.split(message, maxsplit=1)[0].split(message[3])
    return fields[n - 1] if len(fields) > n - 1 else ""


def control_id_of(message: str) -> str:
    """MSH-10 of an ER7 message, or "" when the message has no usable MSH."""
    return msh_field(message, 10).split(message[4])[0] if len(message) > 4 else ""


# --- the Destination ---------------------------------------------------------------------------------------


class MllpDestination(Destination):
    """An HIE (or any HL7 v2 receiver) over MLLP: one ORU^R01 per item, each judged by its ACK, each result
    yielded as its ACK arrives (so that it is recorded before the next message goes out).

    AA/CA: delivered. AE/CE: the receiver refused this message for good (dead letter, with its reason).
    AR/CR or no connection: not received, retry later. No ACK in time, the connection lost after sending, an ACK
    for another message or no ACK at all: in doubt (the receiver may have stored it); sent again later with the
    same MSH-10, by which receivers drop duplicates.
    """

    # Items marked in flight at a time: after a crash at most this many are in doubt.
    batch_size = 10

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ack_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_consecutive_timeouts: int = 3,
        encoding: str = "utf-8",
    ) -> None:
        # a URL, so that the outbox can rebuild the destination from its name (deliver/factory.py)
        self.name = f"mllp://[{host}]:{port}" if ":" in host else f"mllp://{host}:{port}"
        # After this many ACK timeouts in a row the receiver is taken to be down: the rest of the batch is
        # handed back for retry instead of waiting ack_timeout for every item (Mirth users' "queue stuck").
        self.max_consecutive_timeouts = max(1, max_consecutive_timeouts)
        self.client = MllpClient(
            host, port, connect_timeout=connect_timeout, ack_timeout=ack_timeout, encoding=encoding
        )

    def sent_references(self, item: DeliveryItem) -> list[str]:
        control_id = control_id_of(item.hl7v2)
        return [control_id] if control_id else []

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        halted = ""
        timeouts = 0
        for item in items:
            if halted:
                yield [DeliveryResult(item.key, Outcome.RETRY, f"not sent: {halted}")]
                continue
            try:
                result = await self._deliver_one(item)
            except ConnectFailed as exc:
                # the peer is not there: every other item of the batch would fail the same way
                halted = str(exc)
                result = DeliveryResult(item.key, Outcome.RETRY, halted)
            except AckTimeout as exc:
                timeouts += 1
                result = DeliveryResult(item.key, Outcome.IN_DOUBT, str(exc))
                if timeouts >= self.max_consecutive_timeouts:
                    halted = f"{timeouts} ACK timeouts in a row from {self.name}"
            except MllpError as exc:
                result = DeliveryResult(item.key, Outcome.IN_DOUBT, str(exc))
            except Exception as exc:  # a fault of ours must not take the rest of the batch down
                log.exception("mllp %s: unexpected error on item %s", self.name, item.key)
                result = DeliveryResult(item.key, Outcome.IN_DOUBT, f"unexpected error: {type(exc).__name__}")
            else:
                timeouts = 0
            log.debug("mllp %s: item %s -> %s", self.name, item.key, result.outcome)
            yield [result]

    async def _deliver_one(self, item: DeliveryItem) -> DeliveryResult:
        # ER7 separates segments with CR; a message stored with LF or CRLF line ends is put right.
        message = _SEGMENT_SPLIT.sub("\r", item.hl7v2.strip("\r\n"))
        control_id = control_id_of(message)
        if not control_id:
            return DeliveryResult(item.key, Outcome.DEAD, "item has no HL7 v2 message with an MSH-10 control id")
        if "\x0b" in message or "\x1c" in message:
            return DeliveryResult(item.key, Outcome.DEAD, "message contains MLLP block characters (VT or FS)")
        charset = msh_field(message, 18).split(message[4])[0].strip().upper()
        encoding = CHARSETS.get(charset) if charset else None
        if charset and encoding is None:
            return DeliveryResult(item.key, Outcome.DEAD, f"MSH-18 character set {charset!r} is not supported")
        try:
            reply = await self.client.send(message, encoding)
        except UnicodeEncodeError:
            return DeliveryResult(item.key, Outcome.DEAD, f"message cannot be written in MSH-18 {charset!r}")
        ack = parse_ack(reply)
        if ack is None:
            await self.client.reset()
            return DeliveryResult(item.key, Outcome.IN_DOUBT, "reply is not an ACK (no MSA segment)")
        if ack.control_id != control_id:
            await self.client.reset()
            return DeliveryResult(
                item.key,
                Outcome.IN_DOUBT,
                f"ACK MSA-2 {ack.control_id!r} does not echo MSH-10 {control_id!r}; connection reset",
            )
        detail = ack.detail()[:DETAIL_LIMIT]
        if ack.code in ("AA", "CA"):
            return DeliveryResult(item.key, Outcome.DELIVERED, detail, disclosed=[control_id])
        if ack.code in ("AE", "CE"):
            return DeliveryResult(item.key, Outcome.DEAD, detail)
        if ack.code in ("AR", "CR"):
            return DeliveryResult(item.key, Outcome.RETRY, detail)
        return DeliveryResult(item.key, Outcome.IN_DOUBT, f"unknown MSA-1 acknowledgment code: {detail}")

    async def close(self) -> None:
        await self.client.close()
