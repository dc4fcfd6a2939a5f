"""Shortcuts for the frames of every round trip; byte- and value-identical to the codec's own.

``encode_frame(Frame(seq, device, Request(command, fields)))`` builds two frozen dataclasses
and dispatches on the message type before doing the work; for a REQUEST or REPLY that is most of
the encoding time. ``encode_request``/``encode_reply`` build the bytes directly from the codec's
own pieces (field validation, JSON encoder, CRC, stuffing) and remember each validated name.

``FastDecoder`` is a ``FrameDecoder`` that skips the stream bookkeeping when a read delivers
exactly one whole frame (the usual case for a reply on a quiet link) and hands the body to
``decode_body`` directly; anything else goes through the ``FrameDecoder`` unchanged.
"""

from __future__ import annotations

from typing import Final

from ._crc import crc16_ccitt_false
from .codec import (
    _HEADER,
    _NAME_RE,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    DecodeError,
    Fields,
    Frame,
    FrameDecoder,
    MsgType,
    Status,
    _encode_fields,
    _stuff,
    decode_body,
)

_EMPTY_JSON: Final = b"{}"
_MAX_NAMES: Final = 1024
_names: dict[str, bytes] = {}
_REQUEST: Final = int(MsgType.REQUEST)
_REPLY: Final = int(MsgType.REPLY)
_STATUS_BYTES: Final[dict[int, bytes]] = {int(s): bytes((s,)) for s in Status}


def _name_prefix(name: str) -> bytes:
    prefix = _names.get(name)
    if prefix is None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid name {name!r}: use [A-Za-z0-9_.:-], 1-64 characters")
        prefix = bytes((len(name),)) + name.encode("ascii")
        if len(_names) < _MAX_NAMES:  # commands are a fixed vocabulary; never grow unbounded
            _names[name] = prefix
    return prefix


def _frame(msg_type: int, seq: int, device: int, payload: bytes) -> bytes:
    if not 0 <= seq <= 0xFFFF or not 0 <= device <= 0xFF:
        raise ValueError(f"seq {seq} or device {device} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    raw = _HEADER.pack(PROTOCOL_VERSION, msg_type, 0, device, seq, len(payload)) + payload
    raw += crc16_ccitt_false(raw).to_bytes(2, "big")
    return b"\x7e" + _stuff(raw) + b"\x7f"


def encode_request(seq: int, device: int, command: str, fields: Fields) -> bytes:
    """``encode_frame(Frame(seq, device, Request(command, fields)))``, without the objects."""
    body = _encode_fields(fields) if fields else _EMPTY_JSON
    return _frame(_REQUEST, seq, device, _name_prefix(command) + body)


def encode_reply(seq: int, device: int, status: Status, fields: Fields) -> bytes:
    """``encode_frame(Frame(seq, device, Reply(status, fields)))``, without the objects."""
    code = _STATUS_BYTES.get(status)
    if code is None:
        raise ValueError(f"unknown status {status!r}")
    body = _encode_fields(fields) if fields else _EMPTY_JSON
    return _frame(_REPLY, seq, device, code + body)


class FastDecoder:
    """``FrameDecoder.feed`` with a shortcut for reads that hold exactly one whole frame."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._decoder = FrameDecoder(max_payload)
        self._max_payload = max_payload
        # True when the inner decoder holds nothing: every read so far ended with an EOF byte,
        # which either closed a frame or was skipped as noise, leaving no partial frame behind.
        self._clean = True

    @property
    def buffered(self) -> int:
        return self._decoder.buffered

    def feed(self, data: bytes) -> list[Frame | DecodeError]:
        n = len(data)
        if (
            self._clean
            and n >= 2
            and data[0] == 0x7E
            and data[n - 1] == 0x7F
            and data.find(b"\x7e", 1) < 0
            and data.find(b"\x7f", 1, n - 1) < 0
        ):
            return [decode_body(data[1 : n - 1], self._max_payload)]
        self._clean = n > 0 and data[n - 1] == 0x7F
        return self._decoder.feed(data)
