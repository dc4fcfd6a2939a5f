"""The wire protocol's messages as Python values (docs/wire-protocol.md): message types,
status and error codes, the message and frame records, and the helpers that build frames.

Their bytes are :mod:`.codec`'s business (which re-exports every name here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Final, NamedTuple, TypeAlias

from ._crc import crc32_image

MAX_PAYLOAD: Final = 0xFFFF
BULK_HEADER_SIZE: Final = 22
MAX_BULK_DATA: Final = MAX_PAYLOAD - BULK_HEADER_SIZE
DEFAULT_CHUNK_SIZE: Final = 16 * 1024
MAX_NAME_LEN: Final = 64
HEARTBEAT_PERIOD_S: Final = 0.2
HEARTBEAT_TIMEOUT_S: Final = 1.0


class MsgType(IntEnum):
    REQUEST = 0x01
    REPLY = 0x02
    ACK = 0x03
    NAK = 0x04
    EVENT = 0x05
    HEARTBEAT = 0x06
    BULK = 0x07


_MSG_TYPES: Final = frozenset(int(t) for t in MsgType)


class Flags(IntFlag):
    NONE = 0
    ACK_REQUESTED = 0x01
    AUTH = 0x02


class Status(IntEnum):
    OK = 0
    BAD_STATE = 1
    BAD_ARG = 2
    BUSY = 3
    FAULT = 4
    UNKNOWN_COMMAND = 5
    INTERLOCK = 6


class FrameError(IntEnum):
    """Why a frame was rejected: the decoder's error kinds and, except GARBAGE, NAK reasons."""

    CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    BAD_VERSION = 4
    BAD_PAYLOAD = 5
    TOO_LARGE = 6
    BAD_ESCAPE = 7
    TRUNCATED = 8
    GARBAGE = 9


class NodeState(IntEnum):
    STARTING = 0
    READY = 1
    ACTIVE = 2
    FAULT = 3
    SAFE = 4


Scalar: TypeAlias = str | int | float | bool | None
Fields: TypeAlias = Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: Fields = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    status: Status
    fields: Fields = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack:
    ref_type: MsgType | None


@dataclass(frozen=True, slots=True)
class Nak:
    reason: FrameError
    ref_type: MsgType | None = None


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    fields: Fields = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    state: NodeState
    period_ms: int = round(HEARTBEAT_PERIOD_S * 1000)
    uptime_ms: int = 0


@dataclass(frozen=True, slots=True)
class BulkChunk:
    transfer_id: int
    index: int
    count: int
    offset: int
    total_size: int
    image_crc: int
    data: bytes = field(repr=False)


Message: TypeAlias = Request | Reply | Ack | Nak | Event | Heartbeat | BulkChunk

_TYPE_OF: Final[dict[type, MsgType]] = {
    Request: MsgType.REQUEST,
    Reply: MsgType.REPLY,
    Ack: MsgType.ACK,
    Nak: MsgType.NAK,
    Event: MsgType.EVENT,
    Heartbeat: MsgType.HEARTBEAT,
    BulkChunk: MsgType.BULK,
}


class Auth(NamedTuple):
    """A received frame's authentication trailer (§7) and the bytes its tag covers.

    A named tuple, not a frozen dataclass: one is built per received frame, and a tuple
    costs a fifth of the time (it is on every reply's path)."""

    sid: int
    ctr: int
    tag: bytes
    #: header, payload, sid and ctr as received: what the session verifies the tag over
    signed: bytes

    def __repr__(self) -> str:
        return f"Auth(sid={self.sid}, ctr={self.ctr})"


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded (or to-be-encoded) frame; the wire ``type`` follows from ``message``.

    ``auth`` is set on decoded frames that carried a trailer (flag ``AUTH``); it is ignored
    when encoding (a session seals frames as it sends them).
    """

    seq: int
    device: int
    message: Message
    flags: int = Flags.NONE
    auth: Auth | None = None

    @property
    def msg_type(self) -> MsgType:
        return _TYPE_OF[type(self.message)]


@dataclass(frozen=True, slots=True)
class Header:
    """The 8 header bytes as received; ``msg_type`` stays an int because it may be unknown."""

    version: int
    msg_type: int
    flags: int
    device: int
    seq: int
    length: int


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A rejected frame or skipped noise. ``header`` is set only when the CRC passed."""

    kind: FrameError
    detail: str
    size: int
    header: Header | None = None


# --- sequence numbers -------------------------------------------------------------------


def next_seq(seq: int) -> int:
    return (seq + 1) & 0xFFFF


def seq_delta(newer: int, older: int) -> int:
    """Signed distance ``newer - older`` modulo 2**16 in -32768..32767 (RFC 1982 style)."""
    return ((newer - older + 0x8000) & 0xFFFF) - 0x8000


# --- message helpers --------------------------------------------------------------------


def request(seq: int, device: int, command: str, /, **args: Scalar) -> Frame:
    return Frame(seq, device, Request(command, args))


def reply(seq: int, device: int, status: Status, /, **fields: Scalar) -> Frame:
    return Frame(seq, device, Reply(status, fields))


def event(seq: int, device: int, name: str, /, **fields: Scalar) -> Frame:
    return Frame(seq, device, Event(name, fields))


def critical_event(seq: int, device: int, name: str, /, **fields: Scalar) -> Frame:
    """An event the receiver must ACK; the device re-sends it until it does."""
    return Frame(seq, device, Event(name, fields), Flags.ACK_REQUESTED)


def ack(seq: int, device: int, ref_type: MsgType | None) -> Frame:
    return Frame(seq, device, Ack(ref_type))


def nak(seq: int, device: int, reason: FrameError, ref_type: MsgType | None = None) -> Frame:
    return Frame(seq, device, Nak(reason, ref_type))


def heartbeat(
    seq: int,
    device: int,
    state: NodeState = NodeState.READY,
    period_ms: int = round(HEARTBEAT_PERIOD_S * 1000),
    uptime_ms: int = 0,
) -> Frame:
    return Frame(seq, device, Heartbeat(state, period_ms, uptime_ms & 0xFFFFFFFF))


def nak_for(error: DecodeError) -> Frame | None:
    """The NAK to send for a decode error, or None when none is due (garbage, ACK/NAK frames)."""
    if error.kind is FrameError.GARBAGE:
        return None
    h = error.header
    if h is None:
        # A header that failed its CRC may name the wrong frame: say "unknown" instead.
        return nak(0, 0, error.kind)
    if h.msg_type in (MsgType.ACK, MsgType.NAK):
        return None
    ref = MsgType(h.msg_type) if h.msg_type in _MSG_TYPES else None
    return nak(h.seq, h.device, error.kind, ref)


def bulk_chunks(
    transfer_id: int,
    data: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    device: int = 0,
    first_seq: int = 0,
) -> list[Frame]:
    """Split ``data`` into BULK frames; chunk ``i`` gets ``seq = first_seq + i`` (wrapping)."""
    if not 1 <= chunk_size <= MAX_BULK_DATA:
        raise ValueError(f"chunk_size must be 1..{MAX_BULK_DATA}, got {chunk_size}")
    total = len(data)
    if total > 0xFFFFFFFF:
        raise ValueError("bulk data over 4 GiB")
    count = max(1, -(-total // chunk_size))
    crc = crc32_image(data)
    view = memoryview(data)
    return [
        Frame(
            (first_seq + i) & 0xFFFF,
            device,
            BulkChunk(
                transfer_id,
                i,
                count,
                i * chunk_size,
                total,
                crc,
                bytes(view[i * chunk_size : (i + 1) * chunk_size]),
            ),
        )
        for i in range(count)
    ]
