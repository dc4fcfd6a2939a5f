"""``tcp+tls://`` links against a real TLS TcpServerLink on loopback, certificates from a
local CA made by the test (hardware_sim.pki)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from drivers.links import LinkDown, LinkError, TcpLink, open_link
from drivers.links._tls import server_context
from hardware_sim.links import TcpServerLink
from hardware_sim.pki import LocalPki

from .conftest import read_exactly, request_reply_exchange

pytestmark = pytest.mark.links


@pytest.fixture
def pki(tmp_path: Path) -> LocalPki:
    return LocalPki(tmp_path / "pki").ensure(["host"])


async def _server(pki: LocalPki, *, client_certs: bool) -> TcpServerLink:
    context = server_context(pki.server.cert, pki.server.key, pki.ca if client_certs else None)
    server = TcpServerLink(ssl_context=context)
    await server.open()
    return server


@pytest_asyncio.fixture
async def tls_server(pki: LocalPki) -> AsyncIterator[TcpServerLink]:
    server = await _server(pki, client_certs=False)
    yield server
    await server.close()


@pytest.mark.asyncio
async def test_round_trip_over_tls(tls_server: TcpServerLink, pki: LocalPki) -> None:
    assert tls_server.host_url.startswith("tcp+tls://127.0.0.1:")
    host = open_link(f"{tls_server.host_url}?ca={pki.ca}")
    assert isinstance(host, TcpLink) and host.target.tls is not None
    async with host:
        await tls_server.wait_peer()
        await request_reply_exchange(host, tls_server)


@pytest.mark.asyncio
async def test_device_requiring_client_certificates(pki: LocalPki) -> None:
    server = await _server(pki, client_certs=True)
    try:
        me = pki.credential("host")
        host = open_link(f"{server.host_url}?ca={pki.ca}&cert={me.cert}&key={me.key}")
        async with host:
            await server.wait_peer()
            await request_reply_exchange(host, server)
        # Without a certificate: TLS 1.3 lets the handshake end, the device then refuses it;
        # its bytes never reach the device, and the host's link goes down saying why.
        anonymous = open_link(f"{server.host_url}?ca={pki.ca}")
        await anonymous.open()
        with pytest.raises(LinkDown, match=r"closed the TLS connection.*give cert= and key="):
            async with asyncio.timeout(5):
                await anonymous.write(b"expose 150 kV")
                await anonymous.read()
        await anonymous.close()
        assert server.peers_served == 1 and not server.peer_connected
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_untrusted_server_certificate_is_a_link_error(
    tls_server: TcpServerLink, tmp_path: Path
) -> None:
    other = LocalPki(tmp_path / "other").ensure()
    with pytest.raises(LinkError, match=r"certificate is not trusted by the CA in .*other/ca\.pem"):
        await open_link(f"{tls_server.host_url}?ca={other.ca}").open()
    # No ca=: the system's trust store, which does not know the room's CA either.
    with pytest.raises(LinkError, match="not trusted by the system's trusted CAs"):
        await open_link(tls_server.host_url).open()
    assert tls_server.peers_served == 0


@pytest.mark.asyncio
async def test_plaintext_peers_fail(tls_server: TcpServerLink, pki: LocalPki) -> None:
    # A plaintext host on the TLS port: its bytes never reach the device; the device hangs up.
    plain = open_link(f"tcp://127.0.0.1:{tls_server.port}")
    await plain.open()
    await plain.write(b"\x7e raw frame")
    with pytest.raises(LinkDown):
        async with asyncio.timeout(5):
            await plain.read()
    await plain.close()
    assert tls_server.peers_served == 0
    # A TLS host on a plaintext port: the handshake fails, a LinkError says so.
    bare = TcpServerLink()
    await bare.open()
    try:
        host = TcpLink(f"tcp+tls://127.0.0.1:{bare.port}?ca={pki.ca}", connect_timeout_s=0.5)
        with pytest.raises(LinkError, match=r"TLS: 127\.0\.0\.1:.* handshake"):
            await host.open()
    finally:
        await bare.close()


@pytest.mark.asyncio
async def test_tls_peer_superseding_keeps_serving(tls_server: TcpServerLink, pki: LocalPki) -> None:
    first = open_link(f"{tls_server.host_url}?ca={pki.ca}")
    await first.open()
    await tls_server.wait_peer()
    second = open_link(f"{tls_server.host_url}?ca={pki.ca}")
    async with second:
        # The newer connection supersedes the first: its bytes are what the device reads.
        await second.write(b"hello")
        assert await read_exactly(tls_server, 5) == b"hello"
        assert tls_server.peers_served == 2
    await first.close()
