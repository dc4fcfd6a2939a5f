"""The fluoroctl device wire protocol: framing, messages, streaming decoder, bulk transfers.

Specification: docs/wire-protocol.md. The codec lives in ``codec``, the host endpoint in
``client`` (``WireClient``); import from here.

The client is loaded on first use: it needs ``drivers.links``, which imports pyserial, aiomqtt
and pyusb (the optional ``links`` extra), and the codec must stay importable without them.
"""

from typing import TYPE_CHECKING

from ._crc import crc16_ccitt_false, crc32_image
from ._fast import FastDecoder, encode_reply, encode_request
from .bulk import BulkAssembler, BulkComplete, BulkError, BulkProblem
from .codec import (
    BULK_HEADER_SIZE,
    DEFAULT_CHUNK_SIZE,
    EOF,
    ESC,
    HEARTBEAT_PERIOD_S,
    HEARTBEAT_TIMEOUT_S,
    MAX_BULK_DATA,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SOF,
    Ack,
    BulkChunk,
    DecodeError,
    Event,
    Fields,
    Flags,
    Frame,
    FrameDecoder,
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
    decode_body,
    encode_frame,
    encode_raw,
    event,
    heartbeat,
    nak,
    nak_for,
    next_seq,
    reply,
    request,
    seq_delta,
)

__all__ = [
    "BULK_HEADER_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "EOF",
    "ESC",
    "HEARTBEAT_PERIOD_S",
    "HEARTBEAT_TIMEOUT_S",
    "MAX_BULK_DATA",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "SOF",
    "Ack",
    "BulkAssembler",
    "BulkChunk",
    "BulkComplete",
    "BulkError",
    "BulkProblem",
    "DecodeError",
    "Event",
    "EventCallback",
    "FastDecoder",
    "Fields",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "GapCallback",
    "Header",
    "Heartbeat",
    "LinkStateCallback",
    "Message",
    "MsgType",
    "Nak",
    "NodeState",
    "Reply",
    "Request",
    "Scalar",
    "Status",
    "WireClient",
    "WireStats",
    "ack",
    "bulk_chunks",
    "crc16_ccitt_false",
    "crc32_image",
    "critical_event",
    "decode_body",
    "encode_frame",
    "encode_raw",
    "encode_reply",
    "encode_request",
    "event",
    "heartbeat",
    "nak",
    "nak_for",
    "next_seq",
    "reply",
    "request",
    "seq_delta",
]

if TYPE_CHECKING:
    from .client import EventCallback, GapCallback, LinkStateCallback, WireClient, WireStats

_CLIENT_NAMES = frozenset(
    ("EventCallback", "GapCallback", "LinkStateCallback", "WireClient", "WireStats")
)


def __getattr__(name: str) -> object:
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
