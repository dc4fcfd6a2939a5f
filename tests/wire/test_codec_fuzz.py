"""Fuzzing the frame format through the public codec: frames are built with ``encode_frame``
and decoded with ``FrameDecoder`` / ``FastDecoder``, so the properties hold for whatever
format version ``PROTOCOL_VERSION`` names.

Properties: arbitrary bytes, split anywhere, never raise; both decoders and a one-shot feed
report the same frames; the buffer stays bounded; every byte is reported once; valid frames
survive surrounding noise; damaged frames never come out as a different frame; the bulk
assembler stays inside its bounds whatever chunks arrive.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.wire import (
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    Ack,
    BulkAssembler,
    BulkChunk,
    BulkComplete,
    BulkError,
    DecodeError,
    Event,
    FastDecoder,
    Frame,
    FrameDecoder,
    Heartbeat,
    MsgType,
    Nak,
    NodeState,
    Reply,
    Request,
    Status,
    encode_frame,
    encode_raw,
)
from drivers.wire.codec import FrameError

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
names = st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
fields = st.dictionaries(st.text(max_size=8), scalars, max_size=4)
MARKERS = [b"\x7e", b"\x7f", b"\x7d"]
# Bytes rich in SOF, EOF and ESC, and in the runs of them a hostile line sends.
noisy = st.lists(
    st.one_of(
        st.binary(max_size=24),
        st.sampled_from(MARKERS),
        st.tuples(st.sampled_from(MARKERS), st.integers(1, 40)).map(lambda t: t[0] * t[1]),
    ),
    max_size=16,
).map(b"".join)
ref_types = st.one_of(st.none(), st.sampled_from(list(MsgType)))


@st.composite
def bulk_messages(draw: st.DrawFn) -> BulkChunk:
    data = draw(st.binary(max_size=64))
    offset = draw(st.integers(0, 100))
    total = draw(st.integers(offset + len(data), offset + len(data) + 100))
    count = draw(st.integers(1, 8))
    return BulkChunk(draw(u16), draw(st.integers(0, count - 1)), count, offset, total, 0, data)


messages = st.one_of(
    st.builds(Request, names, fields),
    st.builds(Reply, st.sampled_from(list(Status)), fields),
    st.builds(Ack, ref_types),
    st.builds(
        Nak, st.sampled_from([k for k in FrameError if k is not FrameError.GARBAGE]), ref_types
    ),
    st.builds(Event, names, fields),
    st.builds(Heartbeat, st.sampled_from(list(NodeState)), u16, u32),
    bulk_messages(),
)
frames = st.builds(Frame, u16, u8, messages, st.sampled_from([0, 1]))
cuts = st.lists(st.integers(0, 4000), max_size=12)


def split_at(data: bytes, at: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in at if 0 < c < len(data)})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


def feed(decoder: FrameDecoder | FastDecoder, pieces: Sequence[bytes]) -> list[Frame | DecodeError]:
    return [x for p in pieces for x in decoder.feed(p)]


def only_frames(items: Iterable[object]) -> list[Frame]:
    return [x for x in items if isinstance(x, Frame)]


@FUZZ
@given(
    st.lists(st.one_of(noisy, frames.map(encode_frame)), max_size=8),
    cuts,
    st.sampled_from([8, 300, MAX_PAYLOAD]),
)
def test_any_split_never_raises_and_all_decoders_agree(
    parts: list[bytes], at: list[int], max_payload: int
) -> None:
    data = b"".join(parts)
    pieces = split_at(data, at)
    slow, fast = FrameDecoder(max_payload), FastDecoder(max_payload)
    limit = 2 * (10 + max_payload)
    got_slow: list[Frame | DecodeError] = []
    got_fast: list[Frame | DecodeError] = []
    for piece in pieces:
        got_slow += slow.feed(piece)
        got_fast += fast.feed(piece)
        assert slow.buffered <= limit + 1 and fast.buffered <= limit + 1
    flushed = slow.flush()
    assert slow.buffered == 0
    once = FrameDecoder(max_payload)
    got_once = once.feed(data) + once.flush()
    assert only_frames(got_slow) == only_frames(got_fast) == only_frames(got_once)
    for item in got_slow + flushed + got_fast:
        assert isinstance(item, Frame) or (isinstance(item, DecodeError) and item.size >= 1)


@FUZZ
@given(noisy, cuts)
def test_every_byte_of_noise_is_reported_once(data: bytes, at: list[int]) -> None:
    decoder = FrameDecoder()
    out = feed(decoder, split_at(data, at)) + decoder.flush()
    if not only_frames(out):  # noise that happens to hold a frame has no known frame size
        assert sum(x.size for x in out if isinstance(x, DecodeError)) == len(data)


@FUZZ
@given(st.lists(st.tuples(noisy, frames), min_size=1, max_size=4), cuts)
def test_frames_after_an_eof_survive_any_noise(
    pairs: list[tuple[bytes, Frame]], at: list[int]
) -> None:
    # An EOF (or the bytes outside frames after one) ends whatever the noise left open.
    stream = b"".join(junk + b"\x7f" + encode_frame(frame) for junk, frame in pairs)
    for decoder in (FrameDecoder(), FastDecoder()):
        decoded = iter(only_frames(feed(decoder, split_at(stream, at))))
        for _, frame in pairs:
            assert any(got == frame for got in decoded), frame


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from([0x7E, 0x7F, 0x7D])),
)


def mutate(wire: bytes, how: tuple[str, int, int]) -> bytes:
    kind, where, arg = how
    if kind == "flip":
        at = where % len(wire)
        return wire[:at] + bytes((wire[at] ^ (1 << arg),)) + wire[at + 1 :]
    if kind == "cut":
        return wire[: 1 + where % (len(wire) - 1)]  # loses at least the EOF
    at = 1 + where % (len(wire) - 1)  # inside the frame, before its EOF
    return wire[:at] + bytes((arg,)) + wire[at:]


@FUZZ
@given(frames, mutations, frames, cuts)
def test_damaged_frames_never_come_out_changed(
    frame: Frame, how: tuple[str, int, int], follower: Frame, at: list[int]
) -> None:
    wire = encode_frame(frame)
    damaged = mutate(wire, how)
    stream = damaged + encode_frame(follower)
    for decoder in (FrameDecoder(), FastDecoder()):
        out = feed(decoder, split_at(stream, at))
        got = only_frames(out)
        # The follower always comes through; nothing else but the untouched original could.
        assert got[-1:] == [follower]
        assert all(g == frame for g in got[:-1])
        if how[0] != "insert" and len(wire) <= 4096:
            # A bit flip or a cut within CRC-16's guaranteed reach is always caught.
            assert got == [follower]
            assert any(isinstance(x, DecodeError) for x in out)


@FUZZ
@given(u8, u8, u16, u8, st.binary(max_size=40))
def test_other_versions_are_reported_not_decoded(
    delta: int, msg_type: int, seq: int, device: int, payload: bytes
) -> None:
    version = (PROTOCOL_VERSION + 1 + delta % 255) & 0xFF  # anything but PROTOCOL_VERSION
    wire = encode_raw(msg_type, seq, device, payload, version=version)
    for decoder in (FrameDecoder(), FastDecoder()):
        out = decoder.feed(wire)
        assert len(out) == 1 and isinstance(out[0], DecodeError)
        assert out[0].kind is FrameError.BAD_VERSION


bulk_frames = st.builds(
    lambda dev, tid, index, count, offset, total, crc, data: Frame(
        0, dev, BulkChunk(tid, index, count, offset, total, crc, data)
    ),
    st.integers(0, 3),
    st.integers(0, 5),
    st.integers(0, 40),
    st.integers(1, 40),
    st.integers(0, 5000),
    st.integers(0, 20000),
    st.sampled_from([0, 0x12345678]),
    st.binary(max_size=600),
)


@FUZZ
@given(st.lists(st.tuples(bulk_frames, st.floats(0, 0.5)), max_size=40))
def test_bulk_assembler_stays_within_its_bounds(chunks: list[tuple[Frame, float]]) -> None:
    max_bytes, max_transfers = 4096, 2
    assembler = BulkAssembler(
        max_transfer_bytes=max_bytes, max_chunks=16, max_transfers=max_transfers, timeout_s=1.0
    )
    now = 0.0
    for frame, step in chunks:
        now += step
        result = assembler.add(frame, now)
        assert result is None or isinstance(result, BulkComplete | BulkError)
        if isinstance(result, BulkComplete):
            assert len(result.data) <= max_bytes
        assert assembler.in_progress <= max_transfers
        assert assembler.buffered_bytes <= max_transfers * max_bytes
        for error in assembler.expire(now):
            assert isinstance(error, BulkError)
    # Idle transfers are released: nothing is held once the timeout has passed.
    timed_out = assembler.expire(now + 2.0)
    assert len(timed_out) <= max_transfers
    assert assembler.in_progress == 0 and assembler.buffered_bytes == 0
