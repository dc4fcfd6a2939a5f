"""Shortcuts for the frames of every round trip; byte- and value-identical to the codec's own.

``encode_frame(Frame(seq, device, Request(command, fields)))`` builds two frozen dataclasses
and dispatches on the message type before doing the work; for a REQUEST or REPLY that is most of
the encoding time. ``encode_request``/``encode_reply`` build the bytes directly from the codec's
own pieces (field validation, JSON encoder, CRC, stuffing) and remember each validated name.

``FastDecoder`` is a ``FrameDecoder`` that skips the stream bookkeeping when a read delivers
exactly one whole frame (the usual case for a reply on a quiet link); anything else goes through
the ``FrameDecoder`` unchanged. A whole valid REQUEST or REPLY frame is decoded by
``decode_whole`` without ``decode_body``'s general dispatch; ``parse_reply`` goes further and
returns a REPLY's values without building any object, for the host's reply fast path
(``WireClient``). Both return None for anything they do not take (other types, any error):
the caller then uses the reference path, which reports errors as it always did.
"""

from __future__ import annotations

from binascii import crc_hqx
from json import encoder as _json_encoder
from typing import Final

from ._crc import crc16_ccitt_false
from .codec import (
    _HEADER,
    _I64_MAX,
    _I64_MIN,
    _JSON_DEC,
    _JSON_ENC,
    _NAME_RE,
    AUTH_SIZE,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    Auth,
    DecodeError,
    Fields,
    Flags,
    Frame,
    FrameDecoder,
    MsgType,
    Reply,
    Request,
    Scalar,
    Sealer,
    Status,
    _decode_named,
    _encode_fields,
    _fields_problem,
    _stuff,
    auth_of,
    decode_body,
)

_EMPTY_JSON: Final = b"{}"
_MAX_NAMES: Final = 1024
_names: dict[str, bytes] = {}
_known_names: dict[bytes, str] = {}  # length byte + name -> name, for names decoded valid
_REQUEST: Final = int(MsgType.REQUEST)
_REPLY: Final = int(MsgType.REPLY)
_STATUS_BYTES: Final[dict[int, bytes]] = {int(s): bytes((s,)) for s in Status}
_STATUS_OF: Final[list[Status | None]] = [None] * 256
for _s in Status:
    _STATUS_OF[_s] = _s
_unpack_header = _HEADER.unpack_from
_AUTH: Final = int(Flags.AUTH)
_TRAILER: Final = AUTH_SIZE + 2  # authentication trailer and CRC after the payload
_MIN_BODY: Final = 8 + 2  # header + CRC
# The C scanner and C encoder behind the codec's shared JSONDecoder/JSONEncoder, called
# directly: ``JSONDecoder.decode`` adds two regex passes for surrounding whitespace (which the
# encoders never emit; text with any falls back to the reference path), and
# ``JSONEncoder.encode`` builds a new C encoder on every call. The encoder here has the codec
# encoder's settings (compact separators, ASCII, no NaN) and no circular-reference markers:
# fields are checked flat and scalar before encoding, so there is nothing to recurse into.
_scan_once = _JSON_DEC.scan_once  # type: ignore[attr-defined]
_c_make_encoder = getattr(_json_encoder, "c_make_encoder", None)
_c_encode = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None,
        _JSON_ENC.default,
        _json_encoder.encode_basestring_ascii,
        None,
        _JSON_ENC.key_separator,
        _JSON_ENC.item_separator,
        _JSON_ENC.sort_keys,
        _JSON_ENC.skipkeys,
        _JSON_ENC.allow_nan,
    )
)


def _encode_json(fields: Fields) -> bytes:
    """``codec._encode_fields``: the same checks, the same bytes."""
    if _c_encode is None or type(fields) is not dict:
        return _encode_fields(fields)
    problem = _fields_problem(fields)
    if problem:
        raise ValueError(problem)
    return "".join(_c_encode(fields, 0)).encode("ascii")


def _decode_json(data: bytes) -> dict[str, Scalar] | None:
    """``codec._decode_fields`` for the text the encoders emit; None where that would
    raise or where the text has anything the shortcut does not take (surrounding space)."""
    try:
        text = data.decode("utf-8")
        obj, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(text) or type(obj) is not dict:
        return None
    for value in obj.values():
        t = type(value)
        if t is float:
            if value - value != 0.0:
                return None
        elif t is int:
            if not _I64_MIN <= value <= _I64_MAX:
                return None
        elif t is not str and t is not bool and value is not None:
            return None
    return obj


def _name_prefix(name: str) -> bytes:
    prefix = _names.get(name)
    if prefix is None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid name {name!r}: use [A-Za-z0-9_.:-], 1-64 characters")
        prefix = bytes((len(name),)) + name.encode("ascii")
        if len(_names) < _MAX_NAMES:  # commands are a fixed vocabulary; never grow unbounded
            _names[name] = prefix
    return prefix


def _frame(msg_type: int, seq: int, device: int, payload: bytes, seal: Sealer | None) -> bytes:
    if not 0 <= seq <= 0xFFFF or not 0 <= device <= 0xFF:
        raise ValueError(f"seq {seq} or device {device} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if seal is None:
        raw = _HEADER.pack(PROTOCOL_VERSION, msg_type, 0, device, seq, len(payload)) + payload
    else:
        raw = _HEADER.pack(PROTOCOL_VERSION, msg_type, _AUTH, device, seq, len(payload)) + payload
        raw += seal(raw)
    raw += crc16_ccitt_false(raw).to_bytes(2, "big")
    return b"\x7e" + _stuff(raw) + b"\x7f"


def encode_request(
    seq: int, device: int, command: str, fields: Fields, seal: Sealer | None = None
) -> bytes:
    """``encode_frame(Frame(seq, device, Request(command, fields)), seal)``, without the
    objects."""
    body = _encode_json(fields) if fields else _EMPTY_JSON
    return _frame(_REQUEST, seq, device, _name_prefix(command) + body, seal)


def encode_reply(
    seq: int, device: int, status: Status, fields: Fields, seal: Sealer | None = None
) -> bytes:
    """``encode_frame(Frame(seq, device, Reply(status, fields)), seal)``, without the
    objects."""
    code = _STATUS_BYTES.get(status)
    if code is None:
        raise ValueError(f"unknown status {status!r}")
    body = _encode_json(fields) if fields else _EMPTY_JSON
    return _frame(_REPLY, seq, device, code + body, seal)


def _unstuffed(data: bytes, n: int) -> bytes | None:
    """Header, payload and CRC of the one frame ``data`` (SOF..EOF, no SOF/EOF inside), if
    its escapes and CRC are valid. Every JSON object ends in an escaped ``}`` (0x7D), so
    nearly every REQUEST and REPLY has escapes: undone with three C ``replace`` passes (the
    codec's dense-escape method), valid iff each ESC led a pair."""
    body = data[1 : n - 1]
    n_esc = body.count(b"\x7d")
    if n_esc:
        raw = (
            body.replace(b"\x7d\x5e", b"\x7e")
            .replace(b"\x7d\x5f", b"\x7f")
            .replace(b"\x7d\x5d", b"\x7d")
        )
        if len(raw) != n - 2 - n_esc:
            return None
        body = raw
    if len(body) < _MIN_BODY or crc_hqx(body, 0xFFFF):
        return None
    return body


def parse_reply(
    data: bytes, max_payload: int = MAX_PAYLOAD
) -> tuple[int, int, int, Status, dict[str, Scalar], Auth | None] | None:
    """``(seq, device, flags, status, fields, auth)`` if ``data`` is exactly one valid REPLY
    frame (SOF to EOF), else None. The values are those ``decode_body`` would give."""
    n = len(data)
    if (
        n < _MIN_BODY + 2
        or data[0] != 0x7E
        or data[n - 1] != 0x7F
        or data.find(b"\x7e", 1) >= 0
        or data.find(b"\x7f", 1, n - 1) >= 0
    ):
        return None
    raw = _unstuffed(data, n)
    if raw is None:
        return None
    version, msg_type, flags, device, seq, length = _unpack_header(raw)
    end = len(raw) - (_TRAILER if flags & _AUTH else 2)
    if (
        version != PROTOCOL_VERSION
        or msg_type != 2
        or length != end - 8
        or length > max_payload
        or not length
    ):
        return None
    status = _STATUS_OF[raw[8]]
    if status is None:
        return None
    fields = _decode_json(raw[9:end])
    if fields is None:
        return None
    return seq, device, flags, status, fields, auth_of(raw, end) if flags & _AUTH else None


def decode_whole(data: bytes, max_payload: int = MAX_PAYLOAD) -> Frame | None:
    """``decode_body(data[1:-1])`` when ``data`` (SOF..EOF, no SOF/EOF inside) is one valid
    REQUEST or REPLY frame; None for anything else (the caller then uses ``decode_body``)."""
    n = len(data)
    if n < _MIN_BODY + 2:
        return None
    raw = _unstuffed(data, n)
    if raw is None:
        return None
    version, msg_type, flags, device, seq, length = _unpack_header(raw)
    auth = flags & _AUTH
    end = len(raw) - (_TRAILER if auth else 2)
    if version != PROTOCOL_VERSION or length != end - 8 or length > max_payload or not length:
        return None
    if msg_type == 1:
        cut = 9 + raw[8]
        name = _known_names.get(raw[8:cut]) if cut < end else None
        args = None if name is None else _decode_json(raw[cut:end])
        if name is None or args is None:
            try:
                name, args = _decode_named(raw[8:end])
            except (ValueError, TypeError, IndexError, RecursionError):
                return None
            if len(_known_names) < _MAX_NAMES:  # a fixed vocabulary; never grow unbounded
                _known_names[raw[8:cut]] = name
        return Frame(seq, device, Request(name, args), flags, auth_of(raw, end) if auth else None)
    if msg_type == 2:
        status = _STATUS_OF[raw[8]]
        fields = _decode_json(raw[9:end])
        if status is None or fields is None:
            return None
        return Frame(seq, device, Reply(status, fields), flags, auth_of(raw, end) if auth else None)
    return None


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

    @property
    def idle(self) -> bool:
        """Nothing of an unfinished frame is held: whole frames may bypass this decoder."""
        return self._clean

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
            item = decode_whole(data, self._max_payload)
            return [decode_body(data[1 : n - 1], self._max_payload) if item is None else item]
        self._clean = n > 0 and data[n - 1] == 0x7F
        return self._decoder.feed(data)
