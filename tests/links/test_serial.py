"""Serial links against real peers: a pty served by PtyServer, pyserial's loop:// and socket://."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from drivers.links import LinkDown, LinkError, SerialLink, open_link
from drivers.wire import encode_frame
from hardware_sim.links import PtyServer, TcpServerLink

from .conftest import read_exactly, read_frames, request_reply_exchange, sample_request


@pytest_asyncio.fixture
async def pty(tmp_path: Path) -> AsyncIterator[PtyServer]:
    server = PtyServer(tmp_path / "carm0")
    await server.open()
    yield server
    await server.close()


@pytest.mark.asyncio
async def test_pty_frames_round_trip(pty: PtyServer) -> None:
    assert os.readlink(pty.path) == pty.device_path
    host = open_link(pty.host_url)
    assert isinstance(host, SerialLink)
    async with host:
        assert host.is_open
        await request_reply_exchange(host, pty)
    assert not host.is_open


@pytest.mark.asyncio
async def test_pty_megabyte_both_ways(pty: PtyServer) -> None:
    data = os.urandom(1 << 20)
    async with open_link(pty.host_url) as host:
        # Host → device: far more than the pty buffers, so writes go out in pieces.
        got, _ = await asyncio.gather(read_exactly(pty, len(data)), host.write(data))
        assert got == data
        got, _ = await asyncio.gather(read_exactly(host, len(data)), pty.write(data))
        assert got == data


@pytest.mark.asyncio
async def test_host_close_and_reopen_keeps_device_and_drops_stale_bytes(pty: PtyServer) -> None:
    host = open_link(pty.host_url)
    await host.open()
    await host.write(b"first")
    assert await read_exactly(pty, 5) == b"first"
    await host.close()
    await pty.write(b"stale reply nobody read")  # sits in the pty while the port is closed
    await host.open()
    await pty.write(b"fresh")
    assert await read_exactly(host, 5) == b"fresh"
    await host.write(b"second")
    assert await read_exactly(pty, 6) == b"second"  # the device side never noticed
    await host.close()


@pytest.mark.asyncio
async def test_restart_is_link_down_then_reopen_same_path(pty: PtyServer) -> None:
    host = open_link(pty.host_url)
    await host.open()
    old_device = pty.device_path
    pending = asyncio.create_task(host.read())
    await asyncio.sleep(0.05)
    pty.restart()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(pending, 2.0)
    assert info.value.url == pty.host_url
    assert "closed" in info.value.detail and str(pty.path) in info.value.detail
    assert not host.is_open
    with pytest.raises(LinkDown):
        await asyncio.wait_for(host.write(b"x"), 2.0)
    assert pty.device_path != old_device
    assert os.readlink(pty.path) == pty.device_path

    await host.close()
    await host.open()  # the same URL: the symlink now names the new pty
    frame = sample_request(seq=9)
    await host.write(encode_frame(frame))
    assert await read_frames(pty, 1) == [frame]
    await host.close()


@pytest.mark.asyncio
async def test_missing_port_is_link_error_naming_it(tmp_path: Path) -> None:
    url = f"serial://{tmp_path}/ttyNOPE?baudrate=9600"
    with pytest.raises(LinkError) as info:
        await open_link(url).open()
    assert info.value.url == url
    assert info.value.detail == f"no such serial port {tmp_path}/ttyNOPE"


@pytest.mark.asyncio
async def test_pty_server_close_removes_symlink_and_fails_reads(tmp_path: Path) -> None:
    server = PtyServer(tmp_path / "table0")
    await server.open()
    assert server.path.is_symlink()
    pending = asyncio.create_task(server.read())
    await asyncio.sleep(0)
    await server.close()
    with pytest.raises(LinkDown):
        await asyncio.wait_for(pending, 1.0)
    assert not server.path.exists() and not server.path.is_symlink()

    await server.open()  # a closed server can be opened again, clean
    async with open_link(server.host_url) as host:
        await host.write(b"again")
        assert await read_exactly(server, 5) == b"again"
    await server.close()


@pytest.mark.asyncio
async def test_pyserial_loop_url() -> None:
    link = open_link("serial+loop://?baudrate=9600")
    assert isinstance(link, SerialLink) and link.target.port == "loop://"
    async with link:
        frame = sample_request()
        await link.write(encode_frame(frame))
        assert await read_frames(link, 1) == [frame]
        pending = asyncio.create_task(link.read())
        await asyncio.sleep(0.01)
    # Closing with a read in flight ends it promptly (one poll) instead of hanging.
    with pytest.raises(LinkDown):
        await asyncio.wait_for(pending, 1.0)


@pytest.mark.asyncio
async def test_pyserial_socket_url_against_tcp_server() -> None:
    server = TcpServerLink()
    await server.open()
    url = f"serial+socket://127.0.0.1:{server.port}"
    host = open_link(url)
    await host.open()
    await server.wait_peer()
    await request_reply_exchange(host, server)
    server.drop_peer()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(host.read(), 2.0)
    assert info.value.url == url
    await host.close()
    await server.close()
