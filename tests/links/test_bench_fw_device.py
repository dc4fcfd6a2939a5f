"""``bench/fw_device.c``, the round-trip benchmark's firmware-speed device, is a correct peer:
the driver stack's replies, clock samples and heartbeats come from it, and damaged frames get
nothing, so the benchmark's headline measures the real protocol.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.clock import Clock
from drivers.links import open_link
from drivers.wire import (
    FastDecoder,
    Frame,
    Heartbeat,
    Reply,
    Status,
    WireClient,
    encode_request,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from bench_roundtrip import build_firmware  # noqa: E402

from tests.keys import TEST_KEY  # noqa: E402

DEV = 7


@pytest.fixture
def fw_pty(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """(slave fd, slave path) with the compiled device serving the master."""
    exe, why = build_firmware(str(tmp_path))
    assert exe is not None, why  # .ci/run installs a C compiler
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([exe, str(master), str(DEV)], pass_fds=(master,))
    os.close(master)
    try:
        yield slave, os.ttyname(slave)
    finally:
        proc.terminate()
        proc.wait(5)
        os.close(slave)


def _read_frames(fd: int, seconds: float) -> list[Frame]:
    os.set_blocking(fd, False)
    decoder, frames = FastDecoder(), []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        frames += [f for f in decoder.feed(data) if isinstance(f, Frame)]
    return frames


def test_answers_valid_requests_and_ignores_damaged_ones(fw_pty: tuple[int, str]) -> None:
    fd, _ = fw_pty
    good = encode_request(0x7E7D, DEV, "status", {"pad": "~}\x7f"})  # seq and args stuffed
    damaged = bytearray(encode_request(41, DEV, "status", {}))
    damaged[5] ^= 0x01
    other_device = encode_request(42, DEV + 1, "status", {})
    os.write(fd, bytes(damaged) + other_device + good)
    frames = _read_frames(fd, 0.5)
    replies = [f for f in frames if isinstance(f.message, Reply)]
    assert [(f.seq, f.device, f.message.status) for f in replies] == [(0x7E7D, DEV, Status.OK)]
    t_s = replies[0].message.fields["t_s"]
    assert isinstance(t_s, float) and abs(t_s - time.monotonic()) < 5.0  # CLOCK_MONOTONIC
    beats = [f for f in frames if isinstance(f.message, Heartbeat)]
    assert 2 <= len(beats) <= 4  # every 200 ms
    assert [f.message.uptime_ms for f in beats] == sorted(f.message.uptime_ms for f in beats)


@pytest.mark.asyncio
async def test_the_driver_stack_runs_against_it(fw_pty: tuple[int, str]) -> None:
    _, path = fw_pty
    client = WireClient(
        lambda: open_link(f"serial://{path}?reply_wait_ms=2"),
        device_id=DEV,
        name="fw",
        clock=Clock.for_running_loop(),
        key=TEST_KEY,
    )
    await client.connect(timeout_s=2.0)
    try:
        stamps = [(await client.call("status"))["t_s"] for _ in range(200)]
        assert all(isinstance(t, float) for t in stamps)
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        # The device clock is CLOCK_MONOTONIC, the host's too: the estimated offset is the
        # round trip's uncertainty at most, well under a millisecond on a pty.
        assert client.clock_uncertainty_s < 1e-3
        assert abs(client.to_host_time(time.monotonic()) - time.monotonic()) < 1e-3
        assert client.stats.timeouts == 0 and client.stats.retries == 0
        await asyncio.sleep(0.5)
        assert client.is_up  # its heartbeats keep the link up
    finally:
        await client.close()
