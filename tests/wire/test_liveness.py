"""The one heartbeat/loss implementation both ends of a link use (drivers/wire/liveness.py)."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.wire.client import WireClient
from drivers.wire.liveness import Liveness
from hardware_sim.wire.endpoint import DeviceEndpoint

Run = Callable[[Callable[[], Awaitable[Any]]], Any]


class _Peer:
    """Records beats and losses; ``can_send``/``watch`` are what the owner would report."""

    def __init__(self, scale: float = 1.0) -> None:
        self.beats: list[float] = []
        self.lost: list[float] = []
        self.periods: list[float] = []
        self.can_send = True
        self.watch = True
        self.live = Liveness(
            period_s=0.2,
            timeout_s=1.0,
            time_scale=scale,
            send=self._send,
            may_send=lambda: self.can_send,
            watching=lambda: self.watch,
            on_lost=self._lost,
            on_period=self.periods.append,
        )

    async def _send(self, now: float) -> None:
        self.beats.append(now)

    def _lost(self) -> None:
        self.lost.append(asyncio.get_running_loop().time())
        self.watch = False  # as both owners do: a lost peer is not watched until heard again

    async def stop(self) -> None:
        self.live.stop_watching()
        ticker = self.live.ticker
        assert ticker is not None
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)


def test_beats_every_period_and_declares_loss_at_the_bound(run_virtual: Run) -> None:
    async def scenario() -> _Peer:
        loop = asyncio.get_running_loop()
        peer = _Peer()
        peer.live.last_rx = loop.time()
        peer.live.start("test")
        await asyncio.sleep(0.5)
        peer.live.last_rx = loop.time()  # a frame at 0.5 s pushes the loss to 1.5 s
        await asyncio.sleep(2.0)
        await peer.stop()
        return peer

    peer = run_virtual(scenario)
    t0 = peer.beats[0]
    gaps = [b - a for a, b in zip(peer.beats, peer.beats[1:], strict=False)]
    assert all(abs(g - 0.2) < 1e-6 for g in gaps), gaps
    assert len(peer.beats) >= 12
    assert len(peer.lost) == 1
    assert abs(peer.lost[0] - (t0 + 1.5)) < 1e-6
    assert peer.periods == peer.beats  # bookkeeping rides on the same tick


def test_a_silent_end_sends_nothing_but_keeps_its_period(run_virtual: Run) -> None:
    async def scenario() -> _Peer:
        peer = _Peer()
        peer.watch = False
        peer.live.start("test")
        await asyncio.sleep(0.45)
        peer.can_send = False  # a stalled device, a host without a link
        await asyncio.sleep(0.6)
        peer.can_send = True
        await asyncio.sleep(0.3)
        await peer.stop()
        return peer

    peer = run_virtual(scenario)
    t0 = peer.beats[0]
    offsets = [round(b - t0, 6) for b in peer.beats]
    assert offsets == [0.0, 0.2, 0.4, 1.2]
    assert peer.lost == []  # not watching: no loss however long the silence


def test_durations_are_wall_seconds_scaled_onto_the_loop(run_virtual: Run) -> None:
    async def scenario() -> _Peer:
        loop = asyncio.get_running_loop()
        peer = _Peer(scale=60.0)
        peer.live.last_rx = loop.time()
        peer.live.start("test")
        await asyncio.sleep(61.0)
        await peer.stop()
        return peer

    peer = run_virtual(scenario)
    assert abs(peer.beats[1] - peer.beats[0] - 12.0) < 1e-6  # 0.2 s × 60
    assert len(peer.lost) == 1 and abs(peer.lost[0] - peer.beats[0] - 60.0) < 1e-6


def test_host_and_device_ends_share_it() -> None:
    for owner in (WireClient, DeviceEndpoint):
        source = inspect.getsource(owner)
        assert "Liveness(" in source, owner
        for own in ("_tick", "_watchdog"):
            assert not hasattr(owner, own), f"{owner.__name__} keeps a {own} of its own"


def test_a_stall_of_our_own_loop_is_not_the_peers_silence() -> None:
    # Real loop, real socket: the peer's frame arrives while this end's loop is blocked past
    # the loss bound. The loop runs the overdue watchdog before the reader task the frame
    # wakes; the watchdog must let it read before deciding. Silence after that is still a loss.
    async def scenario() -> tuple[_Peer, list[float]]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        arrived: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(ours, lambda: arrived.put_nowait(ours.recv(64)))
        peer = _Peer()
        peer.live = Liveness(
            period_s=0.05,
            timeout_s=0.2,
            time_scale=1.0,
            send=peer._send,
            may_send=lambda: True,
            watching=lambda: peer.watch,
            on_lost=peer._lost,
        )
        heard: list[float] = []

        async def reader() -> None:  # as WireClient._read_loop stamps each valid frame
            while True:
                await arrived.get()
                peer.live.last_rx = loop.time()
                heard.append(peer.live.last_rx)

        task = loop.create_task(reader())
        peer.live.last_rx = loop.time()
        peer.live.start("test")
        await asyncio.sleep(0.05)
        threading.Timer(0.1, theirs.send, (b"beat",)).start()
        time.sleep(0.4)  # noqa: ASYNC251 - our loop is blocked: the beat waits in the kernel
        await asyncio.sleep(0.1)
        lost_during_stall = list(peer.lost)
        await asyncio.sleep(0.4)  # now the peer is silent for real
        task.cancel()
        await peer.stop()
        loop.remove_reader(ours)
        ours.close()
        theirs.close()
        assert lost_during_stall == [], "declared lost while the beat sat unread"
        return peer, heard

    peer, heard = asyncio.run(scenario())
    assert len(heard) == 1
    assert len(peer.lost) == 1 and peer.lost[0] >= heard[0] + 0.2
