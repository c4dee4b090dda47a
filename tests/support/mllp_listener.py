"""A real MLLP listener on loopback for tests and benchmarks: answers each message as told, records all."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

VT = b"\x0b"
END_BLOCK = b"\x1c\r"


@dataclass(frozen=True)
class Answer:
    """How the listener answers one message."""

    code: str = "AA"  # MSA-1
    text: str = ""  # MSA-3
    error: str = ""  # when set, an ERR segment (v2.5 layout) with this user message in ERR-8
    canned: str | None = None  # a real ACK message to send instead; its MSA-2 is set to the received MSH-10
    control_id: str | None = None  # MSA-2 to send instead of the received MSH-10 (a mismatched ACK)
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection instead of answering
    close_after: bool = False  # answer, then close the connection
    pieces: int = 1  # write the frame in this many separate TCP sends (one cut falls between FS and CR)
    noise: bytes = b""  # bytes written before the frame's start block
    raw: bytes | None = None  # exactly these bytes instead of a framed ACK


AA = Answer()

Script = Mapping[int, Answer] | Callable[[int, str], Answer]


def received_control_id(message: str) -> str:
    header = message.split("\r", 1)[0]
    fields = header.split(header[3]) if len(header) > 3 else []
    return fields[9] if len(fields) > 9 else ""


def build_ack(message: str, answer: Answer, serial: int) -> str:
    """An ACK in the style of an HIE engine: MSH with sender and receiver swapped, MSA, optional ERR."""
    header = message.split("\r", 1)[0].split("|")
    header += [""] * (13 - len(header))
    trigger = header[8].split("^")[1] if "^" in header[8] else ""
    control_id = answer.control_id if answer.control_id is not None else received_control_id(message)
    segments = [
        f"MSH|^~\\&|{header[4]}|{header[5]}|{header[2]}|{header[3]}|20250301120000||ACK^{trigger}^ACK|"
        f"ACK{serial:06d}|{header[10] or 'P'}|{header[11] or '2.5.1'}",
        f"MSA|{answer.code}|{control_id}" + (f"|{answer.text}" if answer.text else ""),
    ]
    if answer.error:
        segments.append(f"ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||{answer.error}")
    return "\r".join(segments)


def patch_msa2(ack: str, control_id: str) -> str:
    """A real ACK with MSA-2 set to `control_id`, keeping its own segment ends (CR or CRLF)."""
    return re.sub(
        r"(^|[\r\n])(MSA\|[^|\r\n]*\|)[^|\r\n]*",
        lambda m: m.group(1) + m.group(2) + control_id,
        ack,
        count=1,
    )


class MllpListener:
    """`async with MllpListener(script) as listener:` then send to 127.0.0.1:listener.port.

    `script` maps the 0-based index of a received message (over all connections) to an Answer, or is a
    function (index, message) -> Answer; messages it does not name get a plain AA.
    """

    def __init__(self, script: Script | None = None, default: Answer = AA) -> None:
        self.script = script
        self.default = default
        self.received: list[str] = []  # each message, decoded as UTF-8
        self.frames: list[bytes] = []  # each message as it came over the wire
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _answer(self, index: int, message: str) -> Answer:
        if self.script is None:
            return self.default
        if callable(self.script):
            return self.script(index, message)
        return self.script.get(index, self.default)

    async def __aenter__(self) -> MllpListener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    data = await reader.readuntil(END_BLOCK)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = data[data.find(VT) + 1 : -len(END_BLOCK)]
                self.frames.append(body)
                message = body.decode("utf-8", errors="replace")
                index = len(self.received)
                self.received.append(message)
                answer = self._answer(index, message)
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                if answer.drop:
                    return
                await self._write(writer, self._reply(message, answer, index), answer.pieces)
                if answer.close_after:
                    return
        except (ConnectionError, asyncio.CancelledError):
            # cancelled by __aexit__: end quietly, so asyncio's stream callback finds a finished task
            return
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _reply(self, message: str, answer: Answer, index: int) -> bytes:
        if answer.raw is not None:
            return answer.raw
        if answer.canned is not None:
            control_id = answer.control_id if answer.control_id is not None else received_control_id(message)
            ack = patch_msa2(answer.canned, control_id)
        else:
            ack = build_ack(message, answer, index + 1)
        return answer.noise + VT + ack.encode("utf-8") + END_BLOCK

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, payload: bytes, pieces: int) -> None:
        if pieces <= 1:
            writer.write(payload)
            await writer.drain()
            return
        # cuts spread over the frame, plus one between FS and CR: a reader that stops at FS alone breaks
        cuts = sorted({len(payload) * k // pieces for k in range(1, pieces - 1)} | {len(payload) - 1})
        start = 0
        for cut in [*cuts, len(payload)]:
            if cut <= start:
                continue
            writer.write(payload[start:cut])
            await writer.drain()
            await asyncio.sleep(0.01)  # let each piece leave as its own TCP segment
            start = cut
