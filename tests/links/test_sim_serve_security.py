"""`fluoroctl sim serve` as an attacker on the same host meets it: its broker refuses anonymous
clients and serves only TLS; the endpoints file and the log hold paths, never a password; the
device ptys are 0600; a ``tcp+tls`` link is served with the room's CA. One simulated room (a
subprocess, as in tests/e2e) serves every test here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from drivers.links import LinkDown, MqttLink, TcpLink, open_link
from scheduler.links import load_endpoints, resolve_links
from tests.e2e.conftest import LINKS_ROOM, SimServe, start_sim_serve, stop_sim_serve

pytestmark = pytest.mark.links

EFFECTS_TLS = "tcp+tls://${effects}?ca=${tls_ca}&cert=${tls_cert}&key=${tls_key}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimServe, Path]]:
    tmp = tmp_path_factory.mktemp("secure-serve")
    room = tmp / "sim-links-tls.yaml"
    text = LINKS_ROOM.read_text()
    room.write_text(re.sub(r"effects: tcp://\$\{effects\}", f"effects: {EFFECTS_TLS}", text))
    assert EFFECTS_TLS in room.read_text()
    serve = start_sim_serve(tmp, "--room", str(room))
    try:
        yield serve, room
    finally:
        stop_sim_serve(serve)


def _links(serve: SimServe, room: Path) -> dict[str, str]:
    from scheduler.room import load_room

    endpoints = load_endpoints(serve.endpoints)
    return resolve_links(load_room(room).links, endpoints=endpoints, broker=None, room_broker=None)


def test_endpoints_name_credentials_by_path_only(served: tuple[SimServe, Path]) -> None:
    serve, _ = served
    info = serve.info
    assert info["broker"].startswith("mqtt+tls://127.0.0.1:")
    password_file = Path(re.search(r"password_file=([^&]+)", info["broker"]).group(1))
    password = password_file.read_text().splitlines()[0]
    assert stat.S_IMODE(os.stat(password_file).st_mode) == 0o600
    assert password not in serve.endpoints.read_text()
    assert password not in serve.output()
    assert "TLS, passwords, ACL" in serve.output()
    for key in ("tls_ca", "tls_cert", "tls_key"):
        assert Path(info["links"][key]).is_file()
    assert stat.S_IMODE(os.stat(info["links"]["tls_key"]).st_mode) == 0o600


def test_device_ports_are_private(served: tuple[SimServe, Path]) -> None:
    serve, _ = served
    for role in ("carm", "table"):
        device = os.path.realpath(serve.info["links"][role])
        assert device.startswith("/dev/pts/")
        assert stat.S_IMODE(os.stat(device).st_mode) == 0o600, device


@pytest.mark.asyncio
async def test_broker_refuses_anonymous_and_plaintext_clients(
    served: tuple[SimServe, Path],
) -> None:
    serve, _ = served
    parts = re.match(r"mqtt\+tls://([\d.]+):(\d+)\?(.*)", serve.info["broker"])
    assert parts is not None
    host, port = parts.group(1), int(parts.group(2))
    with pytest.raises(aiomqtt.MqttError):  # plaintext MQTT: the TLS listener hangs up
        async with aiomqtt.Client(host, port, timeout=3):
            pass
    ca = re.search(r"ca=([^&]+)", parts.group(3)).group(1)
    context = ssl.create_default_context(cafile=ca)
    with pytest.raises(aiomqtt.MqttError):  # TLS, trusting the CA, but no certificate, no user
        async with aiomqtt.Client(host, port, tls_context=context, timeout=3):
            pass


@pytest.mark.asyncio
async def test_run_reaches_the_devices_with_the_served_credentials(
    served: tuple[SimServe, Path],
) -> None:
    serve, room = served
    links = _links(serve, room)
    injector = open_link(links["injector"])
    assert isinstance(injector, MqttLink) and injector.target.broker.username == "host"
    async with injector:
        assert injector.is_open
    effects = open_link(links["effects"])
    assert isinstance(effects, TcpLink) and effects.target.tls is not None
    async with effects:
        assert effects.is_open
    # The effects device requires the host's client certificate.
    without_cert = re.sub(r"&cert=[^&]+&key=[^&]+", "", links["effects"])
    anonymous = open_link(without_cert)
    await anonymous.open()
    # TLS 1.3 refuses a missing client certificate after the handshake: the refusal arrives
    # as a close or, when our write crossed it, as a reset.
    with pytest.raises(LinkDown, match=r"closed the TLS connection|reset by peer"):
        async with asyncio.timeout(5):
            await anonymous.write(b"\x7e")
            await anonymous.read()
    await anonymous.close()
    assert json.loads(serve.endpoints.read_text())["version"] == 1
