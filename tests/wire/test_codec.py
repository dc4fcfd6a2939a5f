"""Tests for the wire codec (drivers/wire) against docs/wire-protocol.md.

Example counts: the property tests take their counts from ``_EXAMPLES``, scaled by profile.
``HYPOTHESIS_PROFILE=ci`` (or ``CI`` set) runs >= 10,000 generated cases in total; the default
``dev`` profile runs a tenth of that. The profiles are registered here but not loaded, so other
test modules keep whatever profile Hypothesis chose for them.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.wire import (
    MAX_BULK_DATA,
    PROTOCOL_VERSION,
    Ack,
    BulkAssembler,
    BulkChunk,
    BulkComplete,
    BulkError,
    BulkProblem,
    DecodeError,
    Event,
    Flags,
    Frame,
    FrameDecoder,
    FrameError,
    Heartbeat,
    Message,
    MsgType,
    Nak,
    NodeState,
    Reply,
    Request,
    Status,
    ack,
    bulk_chunks,
    crc16_ccitt_false,
    crc32_image,
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

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-protocol.md"

# --- profiles -----------------------------------------------------------------------------

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.filter_too_much]
settings.register_profile("dev", deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile(
    "ci", settings.get_profile("ci"), deadline=None, suppress_health_check=_SUPPRESS
)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
if _PROFILE not in ("dev", "ci"):
    _PROFILE = "dev"
_SCALE = {"dev": 0.1, "ci": 1.0}[_PROFILE]
# ci counts; they sum to 11,000.
_EXAMPLES = {
    "roundtrip": 2500,
    "arbitrary": 2500,
    "split": 1500,
    "garbage": 1500,
    "mutation": 2000,
    "bulk": 500,
    "crc": 500,
}
assert sum(_EXAMPLES.values()) >= 10_000


def fuzz(name: str) -> settings:
    return settings(settings.get_profile(_PROFILE), max_examples=round(_EXAMPLES[name] * _SCALE))


# --- strategies ---------------------------------------------------------------------------

MARKERS = bytes([0x7D, 0x7E, 0x7F, 0x5D, 0x5E, 0x5F, 0x00, 0xFF])
names = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
field_maps = st.dictionaries(st.text(max_size=20), scalars, max_size=8)
# Byte strings rich in markers and escape codes, so stuffing is exercised hard (both the
# sparse and the dense unstuffing path).
marker_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(MARKERS), max_size=300).map(bytes),
    st.lists(st.one_of(st.binary(max_size=8), st.sampled_from([b"\x7e", b"\x7f", b"\x7d"]))).map(
        b"".join
    ),
)
ref_types = st.one_of(st.none(), st.sampled_from(MsgType))
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def bulk_messages(draw: st.DrawFn) -> BulkChunk:
    data = draw(marker_bytes)
    offset = draw(st.integers(0, 1000))
    total = draw(st.integers(offset + len(data), offset + len(data) + 1000))
    count = draw(st.integers(1, 0xFFFFFFFF))
    index = draw(st.integers(0, count - 1))
    return BulkChunk(draw(u16), index, count, offset, total, draw(u32), data)


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Request, names, field_maps),
    st.builds(Reply, st.sampled_from(Status), field_maps),
    st.builds(Ack, ref_types),
    st.builds(Nak, st.sampled_from(FrameError), ref_types),
    st.builds(Event, names, field_maps),
    st.builds(Heartbeat, st.sampled_from(NodeState), u16, u32),
    bulk_messages(),
)
# Bit 1 (AUTH) is set only by sealing a frame with a session (tests/wire/test_session.py).
frames = st.builds(Frame, u16, u8, messages, u8.map(lambda f: f & ~int(Flags.AUTH)))

json_texts = st.recursive(
    st.one_of(scalars, st.just(float("nan")), st.just(float("inf"))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
).map(lambda v: json.dumps(v).encode())
junk_payloads = st.one_of(
    marker_bytes,
    json_texts,
    st.tuples(st.binary(min_size=1, max_size=3), json_texts).map(b"".join),
    st.tuples(u8, names, json_texts).map(lambda t: bytes([t[0]]) + t[1].encode() + t[2]),
)
# Frames with a valid CRC and arbitrary contents: the only way to reach the payload parsers
# with garbage, since random bytes almost never pass the CRC.
crc_valid_junk = st.builds(
    lambda t, s, d, p, f, v: encode_raw(t, s, d, p, flags=f, version=v),
    st.integers(0, 9),
    u16,
    u8,
    junk_payloads,
    u8,
    st.sampled_from([1, 1, 1, 0, 2]),
)
stream_pieces = st.lists(
    st.one_of(
        st.binary(max_size=50),
        st.sampled_from([b"\x7e", b"\x7f", b"\x7d", b"\x7e\x7f", b"\x7d\x7f"]),
        frames.map(encode_frame),
        crc_valid_junk,
    ),
    max_size=12,
)


def feed_all(decoder: FrameDecoder, pieces: Iterable[bytes]) -> list[Frame | DecodeError]:
    out: list[Frame | DecodeError] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def only_frames(items: Iterable[Frame | DecodeError]) -> list[Frame]:
    return [x for x in items if isinstance(x, Frame)]


def stuff(raw: bytes) -> bytes:
    """Byte stuffing written out per byte, as the spec states it."""
    out = bytearray()
    for byte in raw:
        out += bytes([0x7D, byte ^ 0x20]) if byte in (0x7D, 0x7E, 0x7F) else bytes([byte])
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for byte in body:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == 0x7D:
            escaped = True
        else:
            out.append(byte)
    assert not escaped
    return bytes(out)


def crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE straight from its definition, to check binascii.crc_hqx against."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


# --- known answers ------------------------------------------------------------------------


def test_crc_check_values() -> None:
    import binascii

    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_bitwise(b"123456789") == 0x29B1
    assert binascii.crc_hqx(b"123456789", 0) == 0x31C3  # XMODEM: same polynomial, init 0
    assert crc32_image(b"123456789") == 0xCBF43926


@fuzz("crc")
@given(st.binary(max_size=300))
def test_crc_matches_bitwise_reference_and_residue_is_zero(data: bytes) -> None:
    crc = crc16_ccitt_false(data)
    assert crc == crc16_bitwise(data)
    assert crc16_ccitt_false(data + crc.to_bytes(2, "big")) == 0


def _doc_example() -> bytes:
    text = DOC.read_text()
    block = text.split("On the wire (34 bytes):", 1)[1].split("```")[1]
    hex_parts = [m.group(1) for m in re.finditer(r"^((?:[0-9a-f]{2} ?)+)", block, re.M)]
    return bytes.fromhex(" ".join(hex_parts))


def test_doc_example_bytes() -> None:
    expected = bytes.fromhex(
        "7e 02 01 00 02 00 7d 5e 00 14 03 61 72 6d 7b 22 76 6f 6c 75 6d 65 5f 6d 6c 22"
        " 3a 35 30 7d 5d ad 17 7f"
    )
    assert _doc_example() == expected
    frame = request(126, 2, "arm", volume_ml=50)
    assert encode_frame(frame) == expected
    assert FrameDecoder().feed(expected) == [frame]


def test_heartbeat_layout() -> None:
    wire = encode_frame(heartbeat(42, 0, NodeState.READY, 200, 1234))
    raw = bytes.fromhex("02 06 00 00 00 2a 00 07 01 00 c8 00 00 04 d2")
    assert wire == b"\x7e" + stuff(raw + crc16_bitwise(raw).to_bytes(2, "big")) + b"\x7f"


# --- messages and helpers -----------------------------------------------------------------


def test_helpers_build_the_right_messages() -> None:
    assert request(1, 2, "table.move", position_mm=12.5).message == Request(
        "table.move", {"position_mm": 12.5}
    )
    # Positional-only parameters: a field may be called "seq" or "device".
    assert request(1, 2, "x", seq=3, device=4).message == Request("x", {"seq": 3, "device": 4})
    assert reply(1, 2, Status.BAD_ARG, message="no").message == Reply(
        Status.BAD_ARG, {"message": "no"}
    )
    assert event(7, 2, "fault", code=3).flags == 0
    assert critical_event(7, 2, "fault", code=3).flags == Flags.ACK_REQUESTED
    assert ack(5, 2, MsgType.EVENT).msg_type is MsgType.ACK
    assert nak(5, 2, FrameError.CRC).message == Nak(FrameError.CRC, None)
    assert heartbeat(0, 0, uptime_ms=2**32 + 5).message == Heartbeat(NodeState.READY, 200, 5)


def test_seq_arithmetic_wraps() -> None:
    assert next_seq(0xFFFF) == 0
    assert seq_delta(0, 0xFFFF) == 1
    assert seq_delta(0xFFFF, 0) == -1
    assert seq_delta(5, 5) == 0
    assert seq_delta(0x8000 + 3, 3) == -0x8000


@pytest.mark.parametrize(
    "frame",
    [
        request(1, 1, "bad name"),
        request(1, 1, ""),
        request(1, 1, "x" * 65),
        request(1, 1, "é"),
        request(1, 1, "x", v=float("nan")),
        request(1, 1, "x", v=float("inf")),
        request(1, 1, "x", v=2**63),
        request(1, 1, "x", v=[1, 2]),  # type: ignore[arg-type]
        Frame(1, 1, Request("x", {1: 2})),  # type: ignore[dict-item]
        request(0x10000, 1, "x"),
        request(1, 256, "x"),
        Frame(1, 1, Request("x"), flags=256),
        Frame(1, 1, Request("x"), flags=Flags.AUTH),  # only a session's seal sets it
        Frame(1, 1, Heartbeat(NodeState.READY, 0x10000, 0)),
        Frame(1, 1, BulkChunk(1, 1, 1, 0, 0, 0, b"")),
        Frame(1, 1, BulkChunk(1, 0, 1, 0, 1, 0, b"xx")),
        Frame(1, 1, BulkChunk(1, 0, 0, 0, 0, 0, b"")),
        Frame(1, 1, Request("x", {"big": "y" * 70000})),
    ],
)
def test_encoder_rejects_invalid_frames(frame: Frame) -> None:
    with pytest.raises(ValueError):
        encode_frame(frame)


def test_bulk_chunks_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError):
        bulk_chunks(1, b"abc", 0)
    with pytest.raises(ValueError):
        bulk_chunks(1, b"abc", MAX_BULK_DATA + 1)


# --- decoder error reporting --------------------------------------------------------------

GOOD = encode_frame(request(9, 3, "status"))


def _one(data: bytes, decoder: FrameDecoder | None = None) -> Frame | DecodeError:
    out = (decoder or FrameDecoder()).feed(data)
    assert len(out) == 1, out
    return out[0]


def _kind(data: bytes, decoder: FrameDecoder | None = None) -> FrameError:
    result = _one(data, decoder)
    assert isinstance(result, DecodeError), result
    return result.kind


def test_error_kinds() -> None:
    assert _kind(GOOD[:5] + bytes([GOOD[5] ^ 1]) + GOOD[6:]) is FrameError.CRC
    assert _kind(b"\x7e\x01\x02\x7f") is FrameError.BAD_LENGTH
    assert _kind(b"\x7e\x7f") is FrameError.BAD_LENGTH
    assert _kind(b"\x7e\x01\x7d\x7f") is FrameError.BAD_ESCAPE
    assert _kind(b"\x7e" + b"\x7d\x41" * 20 + b"\x7f") is FrameError.BAD_ESCAPE  # dense path
    assert _kind(b"\x7e" + b"a" * 100 + b"\x7d\x41\x7f") is FrameError.BAD_ESCAPE  # sparse path
    assert _kind(encode_raw(1, 1, 1, b"\x01x{}", version=1)) is FrameError.BAD_VERSION
    assert _kind(encode_raw(1, 1, 1, b"\x01x{}", version=3)) is FrameError.BAD_VERSION
    assert _kind(encode_raw(0x42, 1, 1, b"")) is FrameError.UNKNOWN_TYPE
    assert _kind(b"junk") is FrameError.GARBAGE
    small = FrameDecoder(max_payload=4)
    assert _kind(encode_frame(request(1, 1, "toolong")), small) is FrameError.TOO_LARGE


def test_length_field_mismatch_is_bad_length() -> None:
    raw = bytes([PROTOCOL_VERSION, 1, 0, 1, 0, 1, 0, 9]) + b"\x01x{}"  # length 9, payload 4
    raw += crc16_bitwise(raw).to_bytes(2, "big")
    result = _one(b"\x7e" + stuff(raw) + b"\x7f")
    assert isinstance(result, DecodeError)
    assert result.kind is FrameError.BAD_LENGTH
    assert result.header is not None and result.header.length == 9


@pytest.mark.parametrize(
    ("msg_type", "payload"),
    [
        (MsgType.REQUEST, b""),
        (MsgType.REQUEST, b"\x05ab{}"),
        (MsgType.REQUEST, b"\x02a b{}"),
        (MsgType.REQUEST, b"\x01x"),
        (MsgType.REQUEST, b"\x01x[]"),
        (MsgType.REQUEST, b'\x01x{"a":[1]}'),
        (MsgType.REQUEST, b'\x01x{"a":{}}'),
        (MsgType.REQUEST, b'\x01x{"a":NaN}'),
        (MsgType.REQUEST, b'\x01x{"a":1e999}'),
        (MsgType.REQUEST, b'\x01x{"a":9223372036854775808}'),
        (MsgType.REQUEST, b'\x01x{"a":' + b"9" * 5000 + b"}"),
        (MsgType.REQUEST, b"\x01x" + b"[" * 60000),
        (MsgType.REQUEST, b'\x01x{"a":"\xff"}'),
        (MsgType.EVENT, b"\x00{}"),
        (MsgType.REPLY, b""),
        (MsgType.REPLY, b"\x63{}"),
        (MsgType.ACK, b""),
        (MsgType.ACK, b"\x63"),
        (MsgType.NAK, b"\x01"),
        (MsgType.NAK, b"\x63\x00"),
        (MsgType.HEARTBEAT, b"\x01\x00"),
        (MsgType.HEARTBEAT, b"\x09\x00\xc8\x00\x00\x00\x00"),
        (MsgType.BULK, b"\x00" * 21),
        (MsgType.BULK, bytes(22)),  # count 0
        (MsgType.BULK, bytes.fromhex("0001 00000000 00000001 00000000 00000001 00000000") + b"xy"),
    ],
)
def test_bad_payloads_are_reported_with_header(msg_type: MsgType, payload: bytes) -> None:
    result = _one(encode_raw(msg_type, 77, 5, payload))
    assert isinstance(result, DecodeError), result
    assert result.kind is FrameError.BAD_PAYLOAD
    assert result.header is not None and (result.header.seq, result.header.device) == (77, 5)
    expected = nak(77, 5, FrameError.BAD_PAYLOAD, msg_type)
    assert nak_for(result) == (None if msg_type in (MsgType.ACK, MsgType.NAK) else expected)


def test_truncated_frame_then_recovery() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(GOOD[:-4] + GOOD)
    assert [type(x) for x in out] == [DecodeError, Frame]
    assert isinstance(out[0], DecodeError) and out[0].kind is FrameError.TRUNCATED
    assert decoder.feed(GOOD[:7]) == []
    [flushed] = decoder.flush()
    assert flushed.kind is FrameError.TRUNCATED
    assert decoder.buffered == 0 and decoder.flush() == []


def test_unterminated_frame_is_bounded_then_resyncs() -> None:
    decoder = FrameDecoder(max_payload=16)
    limit = 2 * (8 + 16 + 2)  # the largest possible stuffed frame body
    assert feed_all(decoder, [b"\x7e", b"a" * 30, b"b" * (limit - 30)]) == []
    assert decoder.buffered == limit
    out = decoder.feed(b"c")
    assert [x.kind for x in out if isinstance(x, DecodeError)] == [FrameError.TOO_LARGE]
    assert decoder.buffered == 0
    out = decoder.feed(b"tail of the oversized frame" + GOOD)
    assert only_frames(out) == [request(9, 3, "status")]


def test_nak_for_rules() -> None:
    crc_error = DecodeError(FrameError.CRC, "", 10)
    assert nak_for(crc_error) == nak(0, 0, FrameError.CRC, None)
    assert nak_for(DecodeError(FrameError.GARBAGE, "", 3)) is None
    result = _one(encode_raw(MsgType.ACK, 4, 4, b""))  # a malformed ACK is never NAK'd
    assert isinstance(result, DecodeError) and nak_for(result) is None
    result = _one(encode_raw(0x42, 4, 4, b""))
    assert isinstance(result, DecodeError)
    assert nak_for(result) == nak(4, 4, FrameError.UNKNOWN_TYPE, None)


def test_small_feeds_of_a_large_frame() -> None:
    frame = bulk_chunks(1, bytes(range(256)) * 200, 50_000)[0]
    wire = encode_frame(frame)
    decoder = FrameDecoder()
    out = feed_all(decoder, (wire[i : i + 7] for i in range(0, len(wire), 7)))
    assert out == [frame]


# --- properties ---------------------------------------------------------------------------


@fuzz("roundtrip")
@given(frames)
def test_roundtrip_every_message_type(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire[0] == 0x7E and wire[-1] == 0x7F
    body = wire[1:-1]
    assert 0x7E not in body and 0x7F not in body
    raw = unstuff(body)
    assert stuff(raw) == body
    assert crc16_bitwise(raw) == 0
    assert int.from_bytes(raw[6:8], "big") == len(raw) - 10
    assert FrameDecoder().feed(wire) == [frame]
    assert decode_body(body) == frame


@fuzz("arbitrary")
@given(stream_pieces, st.lists(st.integers(0, 10_000), max_size=10), st.sampled_from([8, 300]))
def test_arbitrary_input_never_raises(
    pieces: list[bytes], cuts: list[int], max_payload: int
) -> None:
    data = b"".join(pieces)
    decoder = FrameDecoder(max_payload=max_payload)
    limit = 2 * (10 + max_payload)
    out: list[Frame | DecodeError] = []
    for chunk in split_at(data, cuts):
        out += decoder.feed(chunk)
        assert decoder.buffered <= limit + 1
    out += decoder.flush()
    for item in out:
        if isinstance(item, Frame):
            # Whatever the decoder accepts, the encoder can send again.
            assert FrameDecoder().feed(encode_frame(item)) == [item]
        else:
            assert isinstance(item, DecodeError) and item.size >= 1


@fuzz("split")
@given(st.lists(frames, min_size=1, max_size=6), st.lists(st.integers(0, 100_000), max_size=20))
def test_split_stream_decodes_identically(batch: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in batch)
    whole = FrameDecoder().feed(stream)
    assert whole == batch
    assert feed_all(FrameDecoder(), split_at(stream, cuts)) == batch


@fuzz("garbage")
@given(
    st.lists(st.tuples(marker_bytes, frames), min_size=1, max_size=5),
    marker_bytes,
    st.lists(st.integers(0, 100_000), max_size=8),
)
def test_frames_survive_interleaved_garbage(
    pairs: list[tuple[bytes, Frame]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(junk + encode_frame(frame) for junk, frame in pairs) + tail
    decoded = iter(only_frames(feed_all(FrameDecoder(), split_at(stream, cuts))))
    # Every real frame comes out, in order; garbage that happens to parse may add frames.
    for _, frame in pairs:
        assert any(got == frame for got in decoded), frame


@fuzz("mutation")
@given(frames, st.data())
def test_single_bit_flips_are_never_silently_accepted(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(frame))
    position = data.draw(st.integers(0, len(wire) - 1))
    wire[position] ^= 1 << data.draw(st.integers(0, 7))
    follower = heartbeat(next_seq(frame.seq), 1)
    out = FrameDecoder().feed(bytes(wire) + encode_frame(follower))
    got = only_frames(out)
    # The flipped frame is lost (reported as an error or resynchronised over), never delivered
    # changed or unchanged; the next frame always comes through.
    assert got == [follower]
    if 0 < position < len(wire) - 1:
        assert any(isinstance(x, DecodeError) for x in out)


@st.composite
def bulk_cases(draw: st.DrawFn) -> tuple[bytes, int, list[int]]:
    size = draw(st.integers(0, 150_000))
    image = random.Random(draw(st.integers(0, 2**32))).randbytes(size)
    chunk_size = draw(st.integers(max(1, size // 60), MAX_BULK_DATA))
    count = max(1, -(-size // chunk_size))
    order = draw(st.permutations(range(count)))
    dupes = draw(st.lists(st.integers(0, count - 1), max_size=5))
    return image, chunk_size, [*order, *dupes]


@fuzz("bulk")
@given(bulk_cases(), u16, u8)
def test_bulk_roundtrip_shuffled_and_duplicated(
    case: tuple[bytes, int, list[int]], transfer_id: int, device: int
) -> None:
    image, chunk_size, order = case
    chunks = bulk_chunks(transfer_id, image, chunk_size, device=device, first_seq=0xFFF0)
    wire = b"".join(encode_frame(chunks[i]) for i in order)
    received = feed_all(FrameDecoder(), split_at(wire, [len(wire) // 3, len(wire) // 2]))
    assembler = BulkAssembler()
    results = [assembler.add(f, 0.0) for f in only_frames(received)]
    assert len(received) == len(order)
    done = [r for r in results if r is not None]
    assert done == [BulkComplete(device, transfer_id, image)]
    assert assembler.in_progress == 0
    assert all(f.seq == (0xFFF0 + i) & 0xFFFF for i, f in enumerate(chunks))


# --- bulk assembler -----------------------------------------------------------------------

IMAGE = bytes(range(256)) * 40  # 10,240 bytes


def _chunks(**kw: int) -> list[Frame]:
    return bulk_chunks(kw.pop("transfer_id", 1), IMAGE, 1024, **kw)


def _replace_chunk(frame: Frame, **changes: int | bytes) -> Frame:
    chunk = frame.message
    assert isinstance(chunk, BulkChunk)
    fields = {
        "transfer_id": chunk.transfer_id,
        "index": chunk.index,
        "count": chunk.count,
        "offset": chunk.offset,
        "total_size": chunk.total_size,
        "image_crc": chunk.image_crc,
        "data": chunk.data,
        **changes,
    }
    return Frame(frame.seq, frame.device, BulkChunk(**fields))  # type: ignore[arg-type]


def _add_all(assembler: BulkAssembler, items: Iterable[Frame], now: float = 0.0) -> list[object]:
    return [r for r in (assembler.add(f, now) for f in items) if r is not None]


def test_assembler_timeout_reports_missing_chunks() -> None:
    assembler = BulkAssembler(timeout_s=2.0)
    chunks = _chunks(device=4)
    assert _add_all(assembler, [chunks[i] for i in (0, 2, 3, 9)], now=10.0) == []
    assert assembler.missing(4, 1) == (1, 4, 5, 6, 7, 8)
    assert assembler.missing(4, 2) is None
    assert assembler.expire(11.9) == []
    [timeout] = assembler.expire(12.0)
    assert (timeout.problem, timeout.missing) == (BulkProblem.TIMEOUT, (1, 4, 5, 6, 7, 8))
    assert assembler.in_progress == 0 and assembler.buffered_bytes == 0


def test_assembler_detects_bad_image_crc_and_layout() -> None:
    chunks = _chunks()
    bad_crc = [_replace_chunk(c, image_crc=crc32_image(IMAGE) ^ 1) for c in chunks]
    [error] = _add_all(BulkAssembler(), bad_crc)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.CRC_MISMATCH

    corrupted = [*chunks[:-1], _replace_chunk(chunks[-1], data=b"X" * 1024)]
    [error] = _add_all(BulkAssembler(), corrupted)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.CRC_MISMATCH

    shifted = [*chunks[:-1], _replace_chunk(chunks[-1], offset=9000, data=b"x" * 1000)]
    [error] = _add_all(BulkAssembler(), shifted)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.LAYOUT


def test_assembler_rejects_inconsistent_chunks_but_keeps_the_transfer() -> None:
    chunks = _chunks()
    assembler = BulkAssembler()
    assert assembler.add(chunks[0], 0.0) is None
    error = assembler.add(_replace_chunk(chunks[1], total_size=99_999), 0.0)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.INCONSISTENT
    error = assembler.add(_replace_chunk(chunks[1], index=50), 0.0)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.INCONSISTENT
    assert _add_all(assembler, chunks[1:]) == [BulkComplete(0, 1, IMAGE)]


def test_assembler_bounds() -> None:
    small = BulkAssembler(max_transfer_bytes=1000)
    [error] = _add_all(small, _chunks())
    assert isinstance(error, BulkError) and error.problem is BulkProblem.TOO_LARGE

    two = BulkAssembler(max_transfers=2)
    assert two.add(_chunks(transfer_id=1)[0], 0.0) is None
    assert two.add(_chunks(transfer_id=2)[0], 0.0) is None
    error = two.add(_chunks(transfer_id=3)[0], 0.0)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.TOO_MANY_TRANSFERS
    assert two.add(_chunks(transfer_id=3)[1], 0.0) is None  # refused quietly from now on
    assert two.buffered_bytes == 2048 and two.in_progress == 2

    liar = _replace_chunk(_chunks()[0], count=20_000)  # more chunks than bytes
    error = BulkAssembler().add(liar, 0.0)
    assert isinstance(error, BulkError) and error.problem is BulkProblem.INCONSISTENT


def test_assembler_ignores_late_duplicates_then_forgets() -> None:
    chunks = _chunks()
    assembler = BulkAssembler(timeout_s=2.0)
    assert _add_all(assembler, chunks, now=0.0) == [BulkComplete(0, 1, IMAGE)]
    assert assembler.add(chunks[3], 1.0) is None and assembler.in_progress == 0
    assembler.expire(5.0)
    assert _add_all(assembler, chunks, now=6.0) == [BulkComplete(0, 1, IMAGE)]  # id reused


def test_empty_image_is_one_chunk() -> None:
    [frame] = bulk_chunks(3, b"")
    out = FrameDecoder().feed(encode_frame(frame))
    assert out == [frame]
    assert BulkAssembler().add(frame, 0.0) == BulkComplete(0, 3, b"")


def test_assembler_wants_bulk_frames() -> None:
    add: Callable[[Frame, float], object] = BulkAssembler().add
    with pytest.raises(TypeError):
        add(heartbeat(1, 1), 0.0)
