"""Hostile byte patterns cost the decoders no more work per byte than random noise does.

No wall-clock assertions: the work a decoder does per report (one ``DecodeError`` object, one
step in every consumer, possibly a NAK) and per ``decode_body`` call is what made a stream of
SOF bytes 100-300x dearer than noise, so the tests count reports and ``decode_body`` calls per
read. ``bench/bench_decoder_noise.py`` measures the time.
"""

from __future__ import annotations

import asyncio

import pytest

from drivers.wire import (
    MAX_PAYLOAD,
    DecodeError,
    FastDecoder,
    Frame,
    FrameDecoder,
    FrameError,
    Nak,
    encode_frame,
    request,
)
from drivers.wire import codec as codec_module
from tests.virtual_time import virtual_time
from tests.wire.test_device_endpoint import endpoint

READ = 4096
GOOD_FRAME = request(9, 3, "status")
GOOD = encode_frame(GOOD_FRAME)
SOF, EOF, ESC = b"\x7e", b"\x7f", b"\x7d"


def _fill(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


# Each pattern repeated over 64 KiB: none can hold a valid frame.
PATTERNS = {
    "sof_stream": SOF,
    "sof_eof": SOF + EOF,
    "eof_sof": EOF + SOF,
    "sof_sof_eof": SOF + SOF + EOF,
    "sof_byte": SOF + b"\x01",
    "sof_9_bytes_eof": SOF + b"\x41" * 9 + EOF,
    "sof_esc_eof": SOF + ESC + EOF,
    "short_frame_garbage": SOF + EOF + b"\x00\x7f",
    "long_abandoned": SOF + b"\x41" * 40,
}


def _feed(decoder: FrameDecoder | FastDecoder, data: bytes) -> list[list[Frame | DecodeError]]:
    return [decoder.feed(data[i : i + READ]) for i in range(0, len(data), READ)]


@pytest.fixture
def body_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ``decode_body`` calls made by ``FrameDecoder.feed``."""
    calls = [0]
    real = codec_module.decode_body

    def counting(body: bytes, max_payload: int = MAX_PAYLOAD) -> Frame | DecodeError:
        calls[0] += 1
        return real(body, max_payload)

    monkeypatch.setattr(codec_module, "decode_body", counting)
    return calls


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.parametrize("make", [FrameDecoder, FastDecoder])
def test_debris_is_a_few_reports_per_read(
    name: str, make: type[FrameDecoder | FastDecoder], body_calls: list[int]
) -> None:
    data = _fill(PATTERNS[name], 64 * 1024)
    decoder = make()
    per_read = _feed(decoder, data)
    held = decoder.buffered
    items = [x for read in per_read for x in read]
    assert not [x for x in items if isinstance(x, Frame)]
    # Every byte is accounted for exactly once, whatever the grouping (the SOF of a frame
    # still open is held, not reported).
    reported = sum(x.size for x in items if isinstance(x, DecodeError))
    assert reported + held <= len(data) <= reported + held + 1
    # A report or two per read (debris, then the frame the read ends in), not one per byte.
    assert max(len(read) for read in per_read) <= 3, name
    assert body_calls[0] <= 2 * len(per_read)


def test_sof_stream_is_one_truncated_report_per_read() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(SOF * 1000)
    assert [(x.kind, x.size) for x in out if isinstance(x, DecodeError)] == [
        (FrameError.TRUNCATED, 999)
    ]
    assert decoder.buffered == 0  # the last SOF opened a frame with no body yet
    [tail] = decoder.flush()
    assert tail.kind is FrameError.TRUNCATED and tail.size == 1


def test_short_frames_in_a_run_are_one_report_covering_them_all() -> None:
    run = (SOF + EOF) * 5 + b"\x00" + SOF + b"\x41\x7d" + EOF + SOF + SOF
    out = FrameDecoder().feed(run + GOOD)
    assert out[-1] == GOOD_FRAME
    [report] = out[:-1]
    assert isinstance(report, DecodeError)
    assert report.kind is FrameError.TRUNCATED and report.size == len(run)
    assert "8 frames" in report.detail


def test_one_short_frame_is_still_reported_exactly() -> None:
    out = FrameDecoder().feed(SOF + b"\x01\x7d" + EOF + b"xy" + GOOD)
    assert [x.kind for x in out if isinstance(x, DecodeError)] == [
        FrameError.BAD_ESCAPE,
        FrameError.GARBAGE,
    ]
    assert out[-1] == GOOD_FRAME


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_frame_after_debris_is_recovered_on_any_read_boundary(name: str) -> None:
    debris = _fill(PATTERNS[name], 3000)
    stream = debris + EOF + GOOD + debris + GOOD
    for size in (1, 7, 64, 1000, len(stream)):
        decoder = FastDecoder()
        got = [
            x
            for i in range(0, len(stream), size)
            for x in decoder.feed(stream[i : i + size])
            if isinstance(x, Frame)
        ]
        # The first GOOD follows an EOF, so it is always recovered; the second follows debris
        # that may end inside an unfinished frame, which its SOF abandons.
        assert got == [GOOD_FRAME, GOOD_FRAME], (name, size)


def test_long_esc_runs_are_one_bad_escape_per_frame(body_calls: list[int]) -> None:
    unit = SOF + ESC * 500 + EOF
    data = _fill(unit, 64 * 1024) + ESC * 5000
    items = [x for read in _feed(FrameDecoder(), data) for x in read]
    kinds = [x.kind for x in items if isinstance(x, DecodeError)]
    whole = 64 * 1024 // len(unit)  # the last, cut-off frame runs into the ESC tail
    assert kinds.count(FrameError.BAD_ESCAPE) == whole == body_calls[0]
    assert set(kinds) <= {FrameError.BAD_ESCAPE, FrameError.GARBAGE, FrameError.TOO_LARGE}


def test_maximal_unfinished_frame_is_bounded_and_one_report() -> None:
    decoder = FrameDecoder()
    limit = 2 * (10 + MAX_PAYLOAD)
    stream = SOF + b"\x41" * (limit + 5000) + GOOD
    reads = _feed(decoder, stream)
    items = [x for read in reads for x in read]
    assert [x.kind for x in items if isinstance(x, DecodeError)] == [
        FrameError.TOO_LARGE,
        FrameError.GARBAGE,
    ]
    assert items[-1] == GOOD_FRAME


@virtual_time
async def test_debris_flood_keeps_naks_rate_limited_and_the_device_answering() -> None:
    async with endpoint() as (ep, host, _device, _):
        start = asyncio.get_running_loop().time()
        for i in range(40):  # 200 ms of debris, a burst every 5 ms
            await host.send(_fill(PATTERNS["sof_sof_eof"], 600) + EOF + b"\x00" * (i % 3))
            await asyncio.sleep(0.005)
        elapsed = asyncio.get_running_loop().time() - start
        naks = host.of(Nak)
        assert naks  # the damage is reported...
        assert len(naks) <= elapsed / 0.020 + 1  # ...at most one NAK per 20 ms
        assert ep.stats.decode_errors <= 2 * 40
        reply = await host.call(11, "status")
        assert reply.fields["echo"] == "status"
