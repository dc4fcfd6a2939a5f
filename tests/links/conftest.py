"""Fixtures for the link tests: real peers (pty, TCP server, Mosquitto, USB gadget) and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from drivers.links import Link
from drivers.wire import (
    DecodeError,
    Frame,
    FrameDecoder,
    Status,
    encode_frame,
    event,
    reply,
    request,
)
from hardware_sim.broker import Mosquitto


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port, per test (it starts in ~20 ms)."""
    with Mosquitto() as b:
        yield b


@pytest_asyncio.fixture(autouse=True)
async def no_loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Fail a test whose transports report errors to the event loop (crashed callbacks etc.)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    yield errors
    await asyncio.sleep(0)  # let close callbacks run inside the test's loop
    loop.set_exception_handler(None)
    assert not errors, [e.get("message") for e in errors]


async def read_exactly(link: Link, n: int, timeout_s: float = 5.0) -> bytes:
    """Concatenate reads until ``n`` bytes arrived (stream links split and join writes)."""
    buf = bytearray()
    async with asyncio.timeout(timeout_s):
        while len(buf) < n:
            buf += await link.read()
    assert len(buf) == n, f"got {len(buf)} bytes, expected {n}"
    return bytes(buf)


async def read_frames(link: Link, count: int, timeout_s: float = 5.0) -> list[Frame]:
    """Decode reads until ``count`` frames arrived; any decode error fails the test."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    async with asyncio.timeout(timeout_s):
        while len(frames) < count:
            for item in decoder.feed(await link.read()):
                assert not isinstance(item, DecodeError), item
                frames.append(item)
    return frames


def sample_request(seq: int = 7) -> Frame:
    return request(seq, 1, "carm.set_technique", kvp=75.0, ma=2.5, focal_spot="small")


def sample_replies(seq: int = 7) -> list[Frame]:
    return [
        reply(seq, 1, Status.OK, kvp=75.0, t_s=12.5),
        event(3, 1, "carm.exposure_done", frame=42, dose_mgy=0.125),
    ]


async def request_reply_exchange(host: Link, device: Link) -> None:
    """A real wire exchange: host request → device decodes it; device reply + event → host."""
    req = sample_request()
    await host.write(encode_frame(req))
    assert await read_frames(device, 1) == [req]
    replies = sample_replies()
    for frame in replies:
        await device.write(encode_frame(frame))
    assert await read_frames(host, len(replies)) == replies
