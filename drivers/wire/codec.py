"""Reference codec for the fluoroctl device wire protocol; the spec is docs/wire-protocol.md.

The messages themselves (types, codes, records, frame builders) are in :mod:`.messages`;
this module turns them into bytes and back, and re-exports them.

Encoding problems are programming errors and raise ``ValueError``; decoding problems are line
noise or a misbehaving peer and come back as ``DecodeError`` / ``BulkError`` values, because a
driver must keep reading the link whatever arrives on it.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from typing import Final, TypeAlias

from ._crc import crc16_ccitt_false
from .messages import (
    _MSG_TYPES,
    BULK_HEADER_SIZE,
    DEFAULT_CHUNK_SIZE,
    HEARTBEAT_PERIOD_S,
    HEARTBEAT_TIMEOUT_S,
    MAX_BULK_DATA,
    MAX_NAME_LEN,
    MAX_PAYLOAD,
    Ack,
    Auth,
    BulkChunk,
    DecodeError,
    Event,
    Fields,
    Flags,
    Frame,
    FrameError,
    Header,
    Heartbeat,
    Message,
    MsgType,
    Nak,
    NodeState,
    Reply,
    Request,
    Scalar,
    Status,
    ack,
    bulk_chunks,
    critical_event,
    event,
    heartbeat,
    nak,
    nak_for,
    next_seq,
    reply,
    request,
    seq_delta,
)

#: the messages are :mod:`.messages`'; this module gives them their bytes
__all__ = [
    "AUTH_SIZE",
    "BULK_HEADER_SIZE",
    "CRC_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "EOF",
    "ESC",
    "HEADER_SIZE",
    "HEARTBEAT_PERIOD_S",
    "HEARTBEAT_TIMEOUT_S",
    "MAX_BULK_DATA",
    "MAX_NAME_LEN",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "SOF",
    "Ack",
    "Auth",
    "BulkChunk",
    "DecodeError",
    "Event",
    "Fields",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Header",
    "Heartbeat",
    "Message",
    "MsgType",
    "Nak",
    "NodeState",
    "Reply",
    "Request",
    "Scalar",
    "Sealer",
    "Status",
    "ack",
    "auth_of",
    "bulk_chunks",
    "critical_event",
    "decode_body",
    "encode_frame",
    "encode_raw",
    "event",
    "heartbeat",
    "nak",
    "nak_for",
    "next_seq",
    "reply",
    "request",
    "seq_delta",
]

PROTOCOL_VERSION: Final = 2
SOF: Final = 0x7E
EOF: Final = 0x7F
ESC: Final = 0x7D
HEADER_SIZE: Final = 8
CRC_SIZE: Final = 2
AUTH_SIZE: Final = 24  # sid (4) | ctr (4) | tag (16), between payload and CRC (§7)

_SOF_B: Final = b"\x7e"
_EOF_B: Final = b"\x7f"
_ESC_B: Final = b"\x7d"
_HEADER = struct.Struct(">BBBBHH")
_HEARTBEAT = struct.Struct(">BHI")
_BULK = struct.Struct(">HIIIII")
_SID_CTR = struct.Struct(">II")
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
# One shared C-accelerated encoder/decoder: building them per call costs more than encoding.
_JSON_ENC = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_JSON_DEC = json.JSONDecoder()


# --- encoding ---------------------------------------------------------------------------


def _check_u(value: int, bits: int, what: str) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must fit in u{bits}, got {value}")


def _fields_problem(fields: Fields) -> str | None:
    """What is wrong with a field mapping, or None; one loop shared by encoder and decoder."""
    for key, value in fields.items():
        if not isinstance(key, str):
            return f"field name {key!r} is not a string"
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                return f"field {key!r} is not finite"
        elif isinstance(value, int):
            if not _I64_MIN <= value <= _I64_MAX:
                return f"field {key!r} outside the signed 64-bit range"
        else:
            return f"field {key!r} has unsupported type {type(value).__name__}"
    return None


def _encode_fields(fields: Fields) -> bytes:
    problem = _fields_problem(fields)
    if problem:
        raise ValueError(problem)
    return _JSON_ENC.encode(fields).encode("ascii")


def _encode_named(name: str, fields: Fields) -> bytes:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid name {name!r}: use [A-Za-z0-9_.:-], 1-64 characters")
    return bytes((len(name),)) + name.encode("ascii") + _encode_fields(fields)


def _encode_payload(message: Message) -> bytes:
    match message:
        case Request(command, args):
            return _encode_named(command, args)
        case Event(name, fields):
            return _encode_named(name, fields)
        case Reply(status, fields):
            return bytes((Status(status),)) + _encode_fields(fields)
        case Ack(ref_type):
            return bytes((ref_type or 0,))
        case Nak(reason, ref_type):
            return bytes((FrameError(reason), ref_type or 0))
        case Heartbeat(state, period_ms, uptime_ms):
            _check_u(period_ms, 16, "period_ms")
            _check_u(uptime_ms, 32, "uptime_ms")
            return _HEARTBEAT.pack(NodeState(state), period_ms, uptime_ms)
        case BulkChunk(tid, index, count, offset, total, crc, data):
            problem = _bulk_problem(index, count, offset, total, len(data))
            if problem:
                raise ValueError(problem)
            _check_u(tid, 16, "transfer_id")
            _check_u(crc, 32, "image_crc")
            return _BULK.pack(tid, index, count, offset, total, crc) + data
    raise ValueError(f"not a wire message: {message!r}")


def _stuff(raw: bytes) -> bytes:
    if _ESC_B not in raw and _SOF_B not in raw and _EOF_B not in raw:
        return raw
    # ESC first, so the escapes added by the later passes are not escaped again.
    return (
        raw.replace(b"\x7d", b"\x7d\x5d")
        .replace(b"\x7e", b"\x7d\x5e")
        .replace(b"\x7f", b"\x7d\x5f")
    )


Sealer: TypeAlias = Callable[[bytes], bytes]
"""``seal(raw)``: the authentication trailer for ``raw`` (header with ``AUTH`` set, payload)."""


def encode_raw(
    msg_type: int,
    seq: int,
    device: int,
    payload: bytes,
    *,
    flags: int = 0,
    version: int = PROTOCOL_VERSION,
    seal: Sealer | None = None,
) -> bytes:
    """Frame arbitrary header values around ``payload`` (fault injection, foreign types).

    With ``seal`` (a session's :meth:`~drivers.wire.session.Session.seal`) the frame is
    authenticated: flag ``AUTH`` set and the trailer between payload and CRC.
    """
    _check_u(msg_type, 8, "type")
    _check_u(seq, 16, "seq")
    _check_u(device, 8, "device")
    _check_u(flags, 8, "flags")
    _check_u(version, 8, "version")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if seal is not None:
        flags |= Flags.AUTH
    raw = _HEADER.pack(version, msg_type, flags, device, seq, len(payload)) + payload
    if seal is not None:
        raw += seal(raw)
    raw += crc16_ccitt_false(raw).to_bytes(2, "big")
    return _SOF_B + _stuff(raw) + _EOF_B


def encode_frame(frame: Frame, seal: Sealer | None = None) -> bytes:
    """The wire bytes of ``frame``, SOF to EOF. Raises ValueError for an invalid frame."""
    payload = _encode_payload(frame.message)
    if seal is None and frame.flags & Flags.AUTH:
        raise ValueError("flag AUTH (0x02) is set by sealing the frame with a session")
    return encode_raw(
        frame.msg_type, frame.seq, frame.device, payload, flags=frame.flags, seal=seal
    )


# --- decoding ---------------------------------------------------------------------------


class _PayloadError(ValueError):
    pass


_UNESCAPE: Final[list[bytes | None]] = [None] * 256
_UNESCAPE[0x5D], _UNESCAPE[0x5E], _UNESCAPE[0x5F] = b"\x7d", b"\x7e", b"\x7f"


def _decode_fields(data: bytes) -> dict[str, Scalar]:
    obj = _JSON_DEC.decode(data.decode("utf-8"))
    if type(obj) is not dict:
        raise _PayloadError("fields are not a JSON object")
    # JSON yields exact types, so this is _fields_problem without the isinstance calls; it runs
    # on every received frame.
    for value in obj.values():
        t = type(value)
        if t is float:
            if value - value != 0.0:  # inf - inf and nan - nan are nan
                raise _PayloadError("non-finite number")
        elif t is int:
            if not _I64_MIN <= value <= _I64_MAX:
                raise _PayloadError("integer outside the signed 64-bit range")
        elif t is not str and t is not bool and value is not None:
            raise _PayloadError("fields must be scalars")
    return obj


def _decode_named(payload: bytes) -> tuple[str, dict[str, Scalar]]:
    if not payload:
        raise _PayloadError("empty payload")
    end = 1 + payload[0]
    name = payload[1:end].decode("ascii")
    if len(name) != payload[0] or not _NAME_RE.fullmatch(name):
        raise _PayloadError("invalid name")
    return name, _decode_fields(payload[end:])


def _ref_type(code: int) -> MsgType | None:
    return MsgType(code) if code else None


def _bulk_problem(index: int, count: int, offset: int, total: int, size: int) -> str | None:
    if count < 1 or index >= count or index < 0:
        return f"chunk index {index} outside 0..{count - 1}"
    if offset < 0 or offset + size > total or total > 0xFFFFFFFF:
        return f"chunk at {offset}+{size} outside an image of {total} bytes"
    return None


def _decode_payload(msg_type: int, payload: bytes) -> Message:
    if msg_type == MsgType.REQUEST:
        return Request(*_decode_named(payload))
    if msg_type == MsgType.EVENT:
        return Event(*_decode_named(payload))
    if msg_type == MsgType.BULK:
        if len(payload) < BULK_HEADER_SIZE:
            raise _PayloadError("short bulk header")
        tid, index, count, offset, total, crc = _BULK.unpack_from(payload)
        data = payload[BULK_HEADER_SIZE:]
        problem = _bulk_problem(index, count, offset, total, len(data))
        if problem:
            raise _PayloadError(problem)
        return BulkChunk(tid, index, count, offset, total, crc, data)
    if msg_type == MsgType.REPLY:
        if not payload:
            raise _PayloadError("empty payload")
        return Reply(Status(payload[0]), _decode_fields(payload[1:]))
    if msg_type == MsgType.HEARTBEAT:
        if len(payload) != _HEARTBEAT.size:
            raise _PayloadError("heartbeat is 7 bytes")
        state, period, uptime = _HEARTBEAT.unpack(payload)
        return Heartbeat(NodeState(state), period, uptime)
    if msg_type == MsgType.ACK:
        if len(payload) != 1:
            raise _PayloadError("ACK is 1 byte")
        return Ack(_ref_type(payload[0]))
    if len(payload) != 2:  # NAK: the caller only passes known types
        raise _PayloadError("NAK is 2 bytes")
    return Nak(FrameError(payload[0]), _ref_type(payload[1]))


def _unstuff(body: bytes) -> bytes | None:
    """Undo byte stuffing; None if an ESC is not followed by 0x5D-0x5F."""
    n_esc = body.count(_ESC_B)
    if not n_esc:
        return body
    if n_esc * 32 > len(body):
        # Dense escapes: three C passes beat a Python step per escape. Each replacement removes
        # one byte and only a valid pair can match (the codes 0x5D-0x5F are never ESC, and the
        # ESC-ESC pass runs last so the ESCs it produces are not rescanned), so the length shows
        # whether every ESC led a valid pair.
        raw = (
            body.replace(b"\x7d\x5e", b"\x7e")
            .replace(b"\x7d\x5f", b"\x7f")
            .replace(b"\x7d\x5d", b"\x7d")
        )
        return raw if len(raw) == len(body) - n_esc else None
    # Sparse escapes (random data: 1.2 %): split at C speed, then one step per escape; 2-byte
    # replace passes cost ~3x more here because short-needle search is slow.
    parts = body.split(_ESC_B)
    out = [parts[0]]
    append = out.append
    for part in parts[1:]:
        code = _UNESCAPE[part[0]] if part else None
        if code is None:
            return None
        append(code)
        append(part[1:])
    return b"".join(out)


def decode_body(body: bytes, max_payload: int = MAX_PAYLOAD) -> Frame | DecodeError:
    """Decode the stuffed bytes between one SOF and its EOF (markers excluded)."""
    size = len(body) + 2
    if len(body) > 2 * (HEADER_SIZE + max_payload + CRC_SIZE):
        return DecodeError(FrameError.TOO_LARGE, f"{size}-byte frame", size)
    raw = _unstuff(body)
    if raw is None:
        return DecodeError(FrameError.BAD_ESCAPE, "ESC not followed by 0x5D-0x5F", size)
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        return DecodeError(FrameError.BAD_LENGTH, f"{len(raw)} bytes is too short", size)
    if crc16_ccitt_false(raw):
        return DecodeError(FrameError.CRC, "CRC mismatch", size)
    version, msg_type, flags, device, seq, length = _HEADER.unpack_from(raw)
    trailer = AUTH_SIZE if flags & Flags.AUTH else 0
    n = len(raw) - HEADER_SIZE - CRC_SIZE - trailer
    # Header objects are built only for errors: constructing one costs ~1 us per frame.
    if version != PROTOCOL_VERSION:
        return _header_error(FrameError.BAD_VERSION, f"version {version}", size, raw)
    if length != n:
        return _header_error(FrameError.BAD_LENGTH, f"length {length}, payload {n}", size, raw)
    if n > max_payload:
        return _header_error(FrameError.TOO_LARGE, f"{n}-byte payload", size, raw)
    if msg_type not in _MSG_TYPES:
        return _header_error(FrameError.UNKNOWN_TYPE, f"type {msg_type}", size, raw)
    try:
        message = _decode_payload(msg_type, raw[HEADER_SIZE : HEADER_SIZE + n])
    except (ValueError, TypeError, IndexError, RecursionError, struct.error) as exc:
        # ValueError covers bad JSON, bad UTF-8, unknown enum codes and huge integers.
        detail = f"{type(exc).__name__}: {exc}"[:200]
        return _header_error(FrameError.BAD_PAYLOAD, detail, size, raw)
    return Frame(seq, device, message, flags, auth_of(raw, HEADER_SIZE + n) if trailer else None)


def auth_of(raw: bytes, end: int) -> Auth:
    """The trailer of the unstuffed frame ``raw`` whose payload ends at ``end``."""
    sid, ctr = _SID_CTR.unpack_from(raw, end)
    signed = end + 8
    return Auth(sid, ctr, raw[signed : signed + 16], raw[:signed])


def _header_error(kind: FrameError, detail: str, size: int, raw: bytes) -> DecodeError:
    return DecodeError(kind, detail, size, Header(*_HEADER.unpack_from(raw)))


class FrameDecoder:
    """Incremental decoder for one byte stream; feed it whatever the transport delivers.

    Keeps at most one unfinished frame (bounded by ``max_payload``) between calls.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 0..{MAX_PAYLOAD}")
        self._max_payload = max_payload
        self._max_body = 2 * (HEADER_SIZE + max_payload + CRC_SIZE)
        # The body (after its SOF) of the unfinished frame, when ``_in_frame``; else nothing.
        self._buf = bytearray()
        self._in_frame = False
        # Where the marker searches resume, so a frame fed in small pieces is scanned once.
        self._scan = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | DecodeError]:
        """Decode what ``data`` completes; at most one report per run of debris (§5).

        Work per read is a handful of C-speed searches plus one step per frame that could be
        valid (10 or more bytes between SOF and EOF) and per report, so no byte pattern costs
        much more per byte than random noise: frames abandoned by a new SOF, frames too short
        to hold a header and CRC, and the bytes outside frames between them are one report.
        """
        buf = self._buf
        buf += data
        out: list[Frame | DecodeError] = []
        pos = 0  # first unconsumed byte; when in a frame, the first byte after its SOF
        n = len(buf)
        end = -1  # the first EOF at or after ``_scan`` (n when none), reused while valid
        classes = bytearray()  # buf as SOF/EOF/data classes, built once per read if debris
        while pos < n:
            if not self._in_frame:
                start = buf.find(_SOF_B, pos)
                if start < 0:
                    out.append(_garbage(n - pos))
                    pos = n
                    break
                if start > pos:
                    out.append(_garbage(start - pos))
                pos = self._scan = start + 1
                self._in_frame = True
            scan = self._scan
            if end < scan:
                end = buf.find(_EOF_B, scan)
                if end < 0:
                    end = n
            # Every SOF before the EOF abandons the frame before it; the body [pos, scan)
            # has no SOF (scan only advances past searched bytes).
            last = buf.rfind(_SOF_B, scan, end)
            body = pos if last < 0 else last + 1
            if end < n and end - body < _MIN_BODY:
                # The frame EOF closes is too short to be valid: debris that may go on.
                if not classes:
                    classes = buf.translate(_CLASSES)
                stop = _debris_end(buf, classes, end + 1)
                units = buf.count(_SOF_B, pos - 1, stop)
                if units > 1:
                    detail = f"{units} frames abandoned or under {_MIN_BODY} bytes"
                    out.append(DecodeError(FrameError.TRUNCATED, detail, stop - pos + 1))
                    pos = stop
                    self._in_frame = False
                    continue
                # One short frame alone: decode_body says what is wrong with it.
            elif last >= 0:
                units = buf.count(_SOF_B, scan, last) + 1
                detail = "SOF before EOF" if units == 1 else f"{units} frames abandoned by SOF"
                out.append(DecodeError(FrameError.TRUNCATED, detail, last - pos + 1))
                pos = self._scan = last + 1
                continue
            if end == n:
                if n - pos > self._max_body:
                    out.append(DecodeError(FrameError.TOO_LARGE, "no EOF in time", n - pos + 1))
                    self._in_frame = False
                    pos = n
                else:
                    self._scan = n
                break
            with memoryview(buf) as view:
                frame_body = bytes(view[pos:end])
            out.append(decode_body(frame_body, self._max_payload))
            pos = end + 1
            self._in_frame = False
        del buf[:pos]
        self._scan = max(0, self._scan - pos)
        return out

    def flush(self) -> list[DecodeError]:
        """End of stream: report and drop an unfinished frame."""
        out: list[DecodeError] = []
        if self._in_frame:
            size = len(self._buf) + 1
            out.append(DecodeError(FrameError.TRUNCATED, "stream ended inside a frame", size))
        self._buf.clear()
        self._in_frame = False
        self._scan = 0
        return out


def _garbage(size: int) -> DecodeError:
    return DecodeError(FrameError.GARBAGE, f"{size} bytes outside frames", size)


# Debris search (FrameDecoder.feed): buf translated to one class letter per byte, so the
# start of the next frame that could be valid is one C-speed search for a fixed needle.
_MIN_BODY: Final = HEADER_SIZE + CRC_SIZE
_CLASSES: Final = bytes(0x53 if b == SOF else 0x45 if b == EOF else 0x64 for b in range(256))
_MAYBE_FRAME: Final = b"S" + b"d" * _MIN_BODY


def _debris_end(buf: bytearray, classes: bytearray, start: int) -> int:
    """Where the debris from ``start`` ends: the first SOF with at least ``_MIN_BODY`` data
    bytes after it (a frame that may be valid, or a long one a later SOF abandons), else the
    SOF of an unfinished frame at the end of ``buf``, else ``len(buf)``. Every frame before
    that point is closed by a marker within ``_MIN_BODY`` bytes: abandoned or too short."""
    stop = classes.find(_MAYBE_FRAME, start)
    if stop >= 0:
        return stop
    tail = buf.rfind(_SOF_B, start)
    if tail >= 0 and buf.find(_EOF_B, tail) < 0:
        return tail
    return len(buf)
