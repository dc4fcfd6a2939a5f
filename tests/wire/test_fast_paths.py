"""The round-trip hot path against the reference: ``decode_whole``, ``parse_reply`` and the
fast JSON encoder give exactly what the codec gives (or None, leaving it to the codec), and
the direct-fd ``SerialLink`` with the client's fast reply receiver behaves like the transport.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.clock import Clock
from drivers.links import SerialLink, open_link
from drivers.wire import (
    DecodeError,
    Frame,
    Reply,
    Request,
    Status,
    WireClient,
    decode_body,
    encode_frame,
    encode_reply,
    encode_request,
)
from drivers.wire._fast import _encode_json, decode_whole, parse_reply
from drivers.wire.codec import _encode_fields
from hardware_sim.links import PtyServer
from hardware_sim.wire import DeviceEndpoint
from tests.keys import TEST_KEY

_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),  # includes "~", "\x7f" and "}" now and then: stuffed bytes
)
field_maps = st.dictionaries(st.text(max_size=8), scalars, max_size=5)
names = st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True)
seqs = st.integers(min_value=0, max_value=0xFFFF)
devices = st.integers(min_value=0, max_value=255)
statuses = st.sampled_from(list(Status))


def _reference(data: bytes) -> Frame | DecodeError:
    return decode_body(data[1:-1])


def _single_frame(data: bytes) -> bool:
    """What FastDecoder checks before it calls decode_whole: no SOF/EOF inside."""
    return data.find(b"\x7e", 1) < 0 and data.find(b"\x7f", 1, len(data) - 1) < 0


@_SETTINGS
@given(seq=seqs, device=devices, status=statuses, fields=field_maps)
def test_parse_reply_and_decode_whole_match_the_codec_on_replies(
    seq: int, device: int, status: Status, fields: dict[str, Any]
) -> None:
    data = encode_reply(seq, device, status, fields)
    assert data == encode_frame(Frame(seq, device, Reply(status, fields)))
    ref = _reference(data)
    assert isinstance(ref, Frame) and isinstance(ref.message, Reply)
    parsed = parse_reply(data)
    whole = decode_whole(data)
    # Valid frames always take the shortcut (the whole point) and give the codec's values.
    assert parsed is not None and whole is not None
    assert parsed == (
        ref.seq,
        ref.device,
        ref.flags,
        ref.message.status,
        ref.message.fields,
        ref.auth,
    )
    assert whole == ref
    assert type(parsed[3]) is Status


@_SETTINGS
@given(seq=seqs, device=devices, name=names, fields=field_maps)
def test_decode_whole_matches_the_codec_on_requests(
    seq: int, device: int, name: str, fields: dict[str, Any]
) -> None:
    data = encode_request(seq, device, name, fields)
    assert data == encode_frame(Frame(seq, device, Request(name, fields)))
    ref = _reference(data)
    whole = decode_whole(data)
    assert whole is not None and whole == ref
    assert decode_whole(data) == ref  # second time: the name comes from the cache
    assert parse_reply(data) is None  # not a REPLY


@_SETTINGS
@given(
    seq=seqs,
    status=statuses,
    fields=field_maps,
    name=names,
    request=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=3),
)
def test_damaged_frames_never_pass_the_shortcuts_differently(
    seq: int,
    status: Status,
    fields: dict[str, Any],
    name: str,
    request: bool,
    flips: list[tuple[int, int]],
) -> None:
    data = bytearray(
        encode_request(seq, 7, name, fields) if request else encode_reply(seq, 7, status, fields)
    )
    for pos, bit in flips:
        i = 1 + pos % (len(data) - 2)  # keep SOF and EOF: the shortcut's own preconditions
        data[i] ^= 1 << bit
    frame = bytes(data)
    if not _single_frame(frame):
        return
    ref = _reference(frame)
    whole = decode_whole(frame)
    assert whole is None or whole == ref
    parsed = parse_reply(frame)
    if parsed is not None:
        assert isinstance(ref, Frame) and isinstance(ref.message, Reply)
        assert parsed == (
            ref.seq,
            ref.device,
            ref.flags,
            ref.message.status,
            ref.message.fields,
            ref.auth,
        )


@pytest.mark.parametrize(
    "payload",
    [
        b'\x00 {"a":1}',  # leading space: the codec takes it, the shortcut leaves it to it
        b'\x00{"a":1} ',
        b"\x00[1]",
        b'\x00{"a":[1]}',
        b'\x00{"a":NaN}',
        b'\x00{"a":1e999}',
        b'\x00{"a":99999999999999999999}',
        b"\x09{}",  # unknown status
        b"\x00\xff",
        b"",
    ],
)
def test_odd_reply_payloads_match_the_codec(payload: bytes) -> None:
    from drivers.wire import encode_raw

    data = encode_raw(2, 5, 1, payload)
    ref = _reference(data)
    whole = decode_whole(data)
    assert whole is None or whole == ref
    parsed = parse_reply(data)
    if isinstance(ref, DecodeError):
        assert parsed is None
    elif parsed is not None:
        assert isinstance(ref.message, Reply)
        assert parsed[3:5] == (ref.message.status, ref.message.fields)


@_SETTINGS
@given(fields=field_maps)
def test_fast_json_encoder_is_byte_identical(fields: dict[str, Any]) -> None:
    assert _encode_json(fields) == _encode_fields(fields)


@pytest.mark.parametrize(
    "bad",
    [{"x": math.nan}, {"x": math.inf}, {"x": 2**63}, {"x": [1]}, {1: 2}, {"x": {"y": 1}}],
)
def test_fast_json_encoder_refuses_what_the_codec_refuses(bad: dict[Any, Any]) -> None:
    with pytest.raises(ValueError) as ref:
        _encode_fields(bad)
    with pytest.raises(ValueError) as fast:
        _encode_json(bad)
    assert str(fast.value) == str(ref.value)


# --- the direct-fd serial link and the client's fast receiver ---------------------------------


@pytest.mark.asyncio
async def test_serial_pty_is_read_directly_and_spy_is_not(tmp_path: Path) -> None:
    pty = PtyServer(tmp_path / "dev0")
    await pty.open()
    try:
        link = open_link(pty.host_url)
        assert isinstance(link, SerialLink)
        async with link:
            assert link.direct
        spy = open_link(f"serial+spy://{pty.device_path}?file=/dev/null")
        assert isinstance(spy, SerialLink)
        async with spy:
            assert not spy.direct  # spy:// logs through Serial.read: keep the transport
            await spy.write(b"\x7eabc\x7f")
            assert await asyncio.wait_for(pty.read(), 2.0) == b"\x7eabc\x7f"
    finally:
        await pty.close()


@pytest.mark.asyncio
async def test_client_over_serial_pty_resolves_replies_in_the_reader_callback(
    tmp_path: Path,
) -> None:
    pty = PtyServer(tmp_path / "dev1")
    await pty.open()
    clock = Clock.for_running_loop()
    slow = asyncio.Event()

    async def handler(command: str, fields: Any) -> tuple[Status, dict[str, Any]]:
        if command == "slow":
            await slow.wait()
        return (Status.OK, {"echo": command}) if command != "bad" else (Status.BAD_ARG, {})

    endpoint = DeviceEndpoint(
        pty, device_id=4, name="dev", handler=handler, clock=clock, key=TEST_KEY
    )
    serve = asyncio.create_task(endpoint.serve())
    client = WireClient(
        lambda: open_link(pty.host_url), device_id=4, name="dev", clock=clock, key=TEST_KEY
    )
    taken: list[bool] = []
    fast = client._fast_receive

    def spy(data: bytes) -> bool:
        taken.append(fast(data))
        return taken[-1]

    client._fast_receive = spy  # type: ignore[method-assign]
    try:
        await client.connect(timeout_s=2.0)
        for i in range(50):
            got = await client.call("status", {"i": i, "s": "}~\x7f"})
            assert got["echo"] == "status"
        assert sum(taken) >= 50  # every reply (and sync_clock's) went the short way
        with pytest.raises(Exception, match="BAD_ARG"):
            await client.call("bad")
        # A reply after its call timed out is left to the reader, which counts it as late.
        with pytest.raises(Exception, match="slow"):
            await client.call("slow", fire_once=True, timeout_s=0.05)
        slow.set()
        for _ in range(100):
            if client.stats.late_replies:
                break
            await asyncio.sleep(0.01)
        assert client.stats.late_replies == 1
        assert client.stats.timeouts == 1
        assert (await client.call("status"))["echo"] == "status"
    finally:
        await client.close()
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
        await pty.close()
