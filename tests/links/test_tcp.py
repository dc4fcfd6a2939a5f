"""TCP links against a real TcpServerLink on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from drivers.links import LinkDown, LinkError, TcpLink, open_link
from drivers.wire import NodeState, encode_frame, heartbeat
from hardware_sim.broker import free_port
from hardware_sim.links import TcpServerLink

from .conftest import read_exactly, read_frames, request_reply_exchange


@pytest_asyncio.fixture
async def server() -> AsyncIterator[TcpServerLink]:
    s = TcpServerLink()
    await s.open()
    yield s
    await s.close()


@pytest.mark.asyncio
async def test_frames_round_trip(server: TcpServerLink) -> None:
    host = open_link(server.host_url)
    assert isinstance(host, TcpLink)
    async with host:
        await server.wait_peer()
        await request_reply_exchange(host, server)
        # Many small frames written back to back arrive intact, however TCP cuts them.
        frames = [heartbeat(i, 5, NodeState.READY, uptime_ms=i * 200) for i in range(200)]
        for f in frames:
            await server.write(encode_frame(f))
        assert await read_frames(host, len(frames)) == frames


@pytest.mark.asyncio
async def test_peer_reset_is_link_down_and_device_serves_next_host(server: TcpServerLink) -> None:
    first = open_link(server.host_url)
    await first.open()
    await server.wait_peer()
    server.drop_peer()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(first.read(), 2.0)
    assert info.value.url == server.host_url
    assert f"127.0.0.1:{server.port}" in info.value.detail
    with pytest.raises(LinkDown):
        await first.write(b"after the reset")
    await first.close()

    # The device side never failed: the next host is served by the same reads and writes.
    second = open_link(server.host_url)
    async with second:
        await server.wait_peer()
        await second.write(b"hello again")
        assert await read_exactly(server, 11) == b"hello again"
        await server.write(b"welcome")
        assert await read_exactly(second, 7) == b"welcome"
    assert server.peers_served == 2


@pytest.mark.asyncio
async def test_write_alone_notices_a_vanished_peer(server: TcpServerLink) -> None:
    host = open_link(server.host_url)
    await host.open()
    await server.wait_peer()
    server.drop_peer()
    with pytest.raises(LinkDown) as info:  # no read in flight: the write itself must notice
        async with asyncio.timeout(2.0):
            while True:
                await host.write(b"heartbeat")
                await asyncio.sleep(0.01)
    assert info.value.url == server.host_url
    await host.close()


@pytest.mark.asyncio
async def test_new_host_supersedes_old_one(server: TcpServerLink) -> None:
    old, new = open_link(server.host_url), open_link(server.host_url)
    await old.open()
    await server.wait_peer()
    await new.open()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(old.read(), 2.0)
    assert "closed the connection" in info.value.detail or "reset" in info.value.detail
    await new.write(b"new host")
    assert await read_exactly(server, 8) == b"new host"
    await old.close()
    await new.close()


@pytest.mark.asyncio
async def test_device_writes_without_host_are_dropped_not_blocking(server: TcpServerLink) -> None:
    async with asyncio.timeout(1.0):
        for _ in range(100):
            await server.write(b"x" * 1000)
    assert not server.peer_connected
    async with open_link(server.host_url) as host:
        await server.wait_peer()
        await server.write(b"only this")
        assert await read_exactly(host, 9) == b"only this"


@pytest.mark.asyncio
async def test_refused_connection_names_host_and_port() -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with pytest.raises(LinkError) as info:
        await open_link(url).open()
    assert info.value.url == url
    assert info.value.detail == f"127.0.0.1:{port} refused connection"
    assert str(info.value) == f"link {url}: 127.0.0.1:{port} refused connection"


@pytest.mark.asyncio
async def test_server_close_fails_device_reads(server: TcpServerLink) -> None:
    pending = asyncio.create_task(server.read())
    await asyncio.sleep(0)
    await server.close()
    with pytest.raises(LinkDown):
        await asyncio.wait_for(pending, 1.0)
    with pytest.raises(LinkDown):
        await server.write(b"x")

    await server.open()  # a closed server can be opened again, clean
    async with open_link(server.host_url) as host:
        await host.write(b"again")
        assert await read_exactly(server, 5) == b"again"
