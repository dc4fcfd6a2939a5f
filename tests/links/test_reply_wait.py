"""``serial://...?reply_wait_ms=N``: a command waits for its reply in ``poll(2)`` (decision 0009).

The device is a thread on the master side of a real pty: the host's wait blocks its own event
loop, so a device on that loop (``PtyServer``) could never answer inside the wait. It speaks
wire protocol version 2: the device side of the handshake (``DeviceHandshakes``), then only
requests sealed in that session, replies and events sealed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from drivers.clock import Clock
from drivers.errors import DeviceLost, DeviceTimeout
from drivers.links import Link, SerialLink, open_link
from drivers.links._serial import MAX_REPLY_WAIT_MS, parse_serial_url
from drivers.wire import (
    FastDecoder,
    Frame,
    Request,
    Scalar,
    Status,
    WireClient,
    encode_frame,
    encode_reply,
    event,
    heartbeat,
)
from drivers.wire.client import LOOP_SHARE_S
from drivers.wire.session import DeviceHandshakes, HandshakeError, Session, Verdict
from tests.keys import TEST_KEY

DEV = 3


@dataclass
class ThreadDevice:
    """Answers ``status`` at once; ``evt``: an EVENT, then the reply 2 ms later; ``mute``:
    nothing; ``die``: closes the pty master without a reply. Heartbeats every 200 ms while a
    session is open. Frames not sealed in the session are dropped (and counted)."""

    master: int
    slave_path: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    session: Session | None = None
    dropped: int = 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="pty-device", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd, decoder = self.master, FastDecoder()
        handshakes = DeviceHandshakes(TEST_KEY, DEV)
        t0 = time.monotonic()
        hb, next_hb = 0, 0.0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= next_hb:
                    if self.session is not None:
                        hb += 1
                        up = int((now - t0) * 1e3)
                        beat = heartbeat(hb, DEV, uptime_ms=up)
                        os.write(fd, encode_frame(beat, self.session.seal))
                    next_hb = now + 0.2
                if not select.select([fd], [], [], 0.05)[0]:
                    continue
                for item in decoder.feed(os.read(fd, 65536)):
                    if not isinstance(item, Frame):
                        continue
                    msg = item.message
                    if item.auth is None:  # only the handshake travels plain
                        if isinstance(msg, Request) and msg.command in ("link.hello", "link.auth"):
                            self._handshake(handshakes, item.seq, msg, int((now - t0) * 1e3))
                        else:
                            self.dropped += 1
                        continue
                    session = self.session
                    if session is None or session.check(item.auth) is not Verdict.OK:
                        self.dropped += 1
                        continue
                    if not isinstance(msg, Request):
                        continue  # host heartbeats
                    command = msg.command
                    if command == "mute":
                        continue
                    if command == "die":
                        return
                    if command == "evt":
                        moved = event(hb + 1000, DEV, "moved", n=1)
                        os.write(fd, encode_frame(moved, session.seal))
                        time.sleep(0.002)
                    reply = encode_reply(item.seq, DEV, Status.OK, {"t_s": now}, session.seal)
                    os.write(fd, reply)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _handshake(
        self, handshakes: DeviceHandshakes, seq: int, req: Request, uptime_ms: int
    ) -> None:
        extra: dict[str, Scalar] = {"state": "READY", "uptime_ms": uptime_ms}
        try:
            if req.command == "link.hello":
                fields = handshakes.hello(req.args, set())
                os.write(self.master, encode_reply(seq, DEV, Status.OK, {**fields, **extra}))
                return
            session = handshakes.auth(req.args)
        except HandshakeError as exc:
            refused: dict[str, Scalar] = {"fault": "auth", "message": str(exc), **extra}
            os.write(self.master, encode_reply(seq, DEV, Status.BAD_ARG, refused))
            return
        self.session = session  # one session: a new one replaces the old
        opened: dict[str, Scalar] = {"role": session.role.value, "session": session.sid, **extra}
        os.write(self.master, encode_reply(seq, DEV, Status.OK, opened, session.seal))

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(2)


@pytest_asyncio.fixture
async def device() -> AsyncIterator[ThreadDevice]:
    master, slave = os.openpty()
    tty.setraw(slave)
    dev = ThreadDevice(master, os.ttyname(slave))
    dev.start()
    try:
        yield dev
    finally:
        dev.close()
        os.close(slave)


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[tuple[WireClient, Link]]:
    links: list[Link] = []

    def factory() -> Link:
        link = open_link(url)
        links.append(link)
        return link

    client = WireClient(
        factory, device_id=DEV, name="dev", clock=Clock.for_running_loop(), key=TEST_KEY
    )
    await client.connect(timeout_s=2.0)
    try:
        yield client, links[-1]
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _loop_turns(period_s: float) -> AsyncIterator[Callable[[], int]]:
    """Counts the turns a task sleeping ``period_s`` at a time gets while the body runs."""
    turns = 0

    async def count() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(period_s)
            turns += 1

    task = asyncio.create_task(count())
    await asyncio.sleep(0)
    try:
        yield lambda: turns
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _spy_waits(link: Link) -> list[bool]:
    """Records, for each wait, whether the reply had arrived when it returned."""
    took: list[bool] = []
    inner: Callable[[Callable[[], bool]], None] = link.wait_reply

    def wait_reply(done: Callable[[], bool]) -> None:
        inner(done)
        took.append(done())

    link.wait_reply = wait_reply  # type: ignore[method-assign]
    return took


def test_reply_wait_option_is_parsed_bounded_and_kept_from_pyserial() -> None:
    assert parse_serial_url("serial:///dev/ttyS1").reply_wait_ms == 0
    assert parse_serial_url("serial:///dev/ttyS1?reply_wait_ms=3").reply_wait_ms == 3
    loop = parse_serial_url("serial+loop://?reply_wait_ms=2&logging=debug")
    assert loop.reply_wait_ms == 2
    assert "reply_wait_ms" not in loop.port and "logging=debug" in loop.port
    too_long = f"serial:///dev/ttyS1?reply_wait_ms={MAX_REPLY_WAIT_MS + 1}"
    with pytest.raises(ValueError, match=r"reply_wait_ms=21 out of range 0\.\.20"):
        parse_serial_url(too_long)
    with pytest.raises(ValueError, match="reply_wait_ms='x' is not an integer"):
        parse_serial_url("serial:///dev/ttyS1?reply_wait_ms=x")


@pytest.mark.asyncio
async def test_replies_arrive_in_the_wait_and_events_stay_in_order(device: ThreadDevice) -> None:
    async with _connected(f"serial://{device.slave_path}?reply_wait_ms=20") as (client, link):
        assert isinstance(link, SerialLink) and link.direct and link.reply_wait_ms == 20
        took = _spy_waits(link)
        for _ in range(100):
            assert (await client.call("status"))["t_s"] is not None
        # The device answers in well under 20 ms: nearly every reply is taken in the wait.
        assert len(took) == 100 and sum(took) >= 90

        seen: list[str] = []
        client.subscribe(lambda name, fields, t: seen.append(name))
        await client.call("evt")
        # The EVENT was written before the REPLY: the subscriber has it when the call returns.
        assert seen == ["moved"]
        assert client.stats.timeouts == 0 and client.stats.retries == 0
        # Every frame both ways was sealed in the one session and verified.
        assert device.session is not None and device.dropped == 0
        assert client.security.bad_tags == client.security.unauthenticated == 0


@pytest.mark.asyncio
async def test_without_the_option_the_loop_takes_every_reply(device: ThreadDevice) -> None:
    async with _connected(f"serial://{device.slave_path}") as (client, link):
        took = _spy_waits(link)
        for _ in range(20):
            await client.call("status")
        assert took == [False] * 20  # the wait returns at once; the event loop delivers


@pytest.mark.asyncio
async def test_a_silent_device_holds_the_loop_only_for_the_wait(device: ThreadDevice) -> None:
    url = f"serial://{device.slave_path}?reply_wait_ms=5"
    async with _connected(url) as (client, _), _loop_turns(0.01) as ticks:
        started = time.monotonic()
        with pytest.raises(DeviceTimeout, match="mute"):
            await client.call("mute", timeout_s=0.1)
        elapsed = time.monotonic() - started
        # 4 attempts of 100 ms, each holding the loop for at most 5 ms: the 10 ms ticker
        # kept running through nearly all of it.
        assert elapsed >= 0.4
        assert ticks() >= 0.5 * elapsed / 0.01


@pytest.mark.asyncio
async def test_back_to_back_calls_still_let_the_loop_run(device: ThreadDevice) -> None:
    url = f"serial://{device.slave_path}?reply_wait_ms=20"
    async with _connected(url) as (client, link), _loop_turns(0) as spins:
        took = _spy_waits(link)
        started = time.monotonic()
        while time.monotonic() - started < 0.25:
            await client.call("status")
        # Replies taken in the wait never pass through the loop; the client lets it run
        # once per LOOP_SHARE_S of such calls (50 times here).
        assert sum(took) >= 0.9 * len(took)
        assert spins() >= 0.5 * 0.25 / LOOP_SHARE_S


@pytest.mark.asyncio
async def test_device_gone_during_the_wait_is_device_lost(device: ThreadDevice) -> None:
    async with _connected(f"serial://{device.slave_path}?reply_wait_ms=20") as (client, _):
        assert (await client.call("status"))["t_s"] is not None
        with pytest.raises(DeviceLost, match="closed") as lost:
            await client.call("die")
        assert device.slave_path in str(lost.value)
        assert not client.is_up


@pytest.mark.asyncio
async def test_option_on_a_port_not_read_directly_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = open_link("serial+loop://?reply_wait_ms=2")
    assert isinstance(link, SerialLink)
    async with link:
        assert not link.direct
        link.wait_reply(lambda: False)  # returns at once: nothing to wait on
        await link.write(b"\x7eabc\x7f")
        got = b""
        while len(got) < 5:  # a polled port hands over what has come so far
            got += await asyncio.wait_for(link.read(), 2.0)
        assert got == b"\x7eabc\x7f"
    assert "reply_wait_ms=2 ignored: the port is not read directly" in caplog.text


@pytest.mark.asyncio
async def test_a_stale_readiness_callback_finding_nothing_is_not_eof(device: ThreadDevice) -> None:
    # The loop's epoll saw the reply; the wait took it first; the queued reader callback then
    # reads an empty port. That must be "nothing yet" (EAGAIN), not the port closing.
    async with _connected(f"serial://{device.slave_path}?reply_wait_ms=20") as (client, link):
        assert isinstance(link, SerialLink)
        fdp = link._fdp
        assert fdp is not None
        fdp._on_readable()  # nothing to read
        fdp._on_readable()
        assert link.is_open and client.is_up
        assert (await client.call("status"))["t_s"] is not None
