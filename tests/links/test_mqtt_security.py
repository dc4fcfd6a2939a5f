"""The secured broker `sim serve` starts, against real Mosquitto: the broker itself refuses
anonymous, wrong-password and certificate-less clients, and its ACL keeps each identity to its
own topics (Mosquitto drops an ACL-denied publish silently under MQTT 3.1.1, so the tests
assert that a reader entitled to the topic never receives it)."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiomqtt
import pytest
import pytest_asyncio

from drivers.links import LinkError, open_link
from hardware_sim.broker import Mosquitto
from hardware_sim.broker_auth import HOST_IDENTITY, SecuredBroker, secure_broker_files
from hardware_sim.links import MqttDeviceLink
from hardware_sim.pki import LocalPki

from .conftest import request_reply_exchange

pytestmark = pytest.mark.links

DEVICES = {"injector": "room1/injector", "carm": "room1/carm"}


@dataclass
class Secured:
    broker: Mosquitto
    files: SecuredBroker

    def url(self, prefix: str, identity: str, **change: str | None) -> str:
        options: dict[str, str] = dict(self.files.options(identity))
        for key, value in change.items():
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        return self.broker.url(prefix, urlencode(options))

    def client(self, identity: str) -> aiomqtt.Client:
        """A raw MQTT client logged in as ``identity`` (not through the link code)."""
        options = self.files.options(identity)
        context = ssl.create_default_context(cafile=options["ca"])
        context.load_cert_chain(options["cert"], options["key"])
        password = Path(options["password_file"]).read_text().splitlines()[0]
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=identity,
            password=password,
            tls_context=context,
            timeout=5,
        )


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    files = secure_broker_files(tmp_path / "broker", DEVICES)
    with Mosquitto(security=files.security) as broker:
        yield Secured(broker, files)


@pytest_asyncio.fixture
async def watch() -> AsyncIterator[Watchers]:
    w = Watchers()
    yield w
    await w.stop()


class Watchers:
    """Subscribers that record what reaches them."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, client: aiomqtt.Client, topic: str) -> Seen:
        seen = Seen()
        await client.subscribe(topic)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append((str(message.topic), message.payload))
                seen.changed.set()

        self._tasks.append(asyncio.create_task(pump()))
        return seen

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Seen(list[tuple[str, bytes]]):
    """(topic, payload) of each message a subscriber received, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()


async def until(seen: Seen, item: tuple[str, bytes]) -> None:
    async with asyncio.timeout(5):
        while item not in seen:
            seen.changed.clear()
            await seen.changed.wait()


# -- the files --------------------------------------------------------------------------------
def test_keys_and_passwords_are_private_and_the_acl_is_per_device(tmp_path: Path) -> None:
    files = secure_broker_files(tmp_path / "broker", DEVICES)
    private = [files.security.key, files.security.password_file, files.security.acl_file]
    for name in (HOST_IDENTITY, *DEVICES):
        private += [files.pki.credential(name).key, files.passwords[name]]
    for path in private:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    for directory in (tmp_path / "broker", files.pki.directory, tmp_path / "broker/passwords"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    passwords = {n: p.read_text().splitlines()[0] for n, p in files.passwords.items()}
    assert len(set(passwords.values())) == 3 and all(len(p) >= 40 for p in passwords.values())
    # The hashed file holds no password in clear; a second start keeps the passwords.
    assert not any(p in files.security.password_file.read_text() for p in passwords.values())
    again = secure_broker_files(tmp_path / "broker", DEVICES)
    assert {n: p.read_text().splitlines()[0] for n, p in again.passwords.items()} == passwords


# -- the broker refuses who is not known ----------------------------------------------------
@pytest.mark.asyncio
async def test_identities_exchange_frames_over_tls(secured: Secured) -> None:
    device = MqttDeviceLink(secured.url("room1/injector", "injector"))
    host = open_link(secured.url("room1/injector", HOST_IDENTITY))
    await device.open()
    async with host:
        await request_reply_exchange(host, device)
    await device.close()


@pytest.mark.asyncio
async def test_anonymous_client_is_refused_by_the_broker(secured: Secured) -> None:
    url = secured.url("room1/injector", HOST_IDENTITY, username=None, password_file=None)
    with pytest.raises(LinkError, match=r"refused an anonymous client.*Not authorized"):
        await open_link(url).open()
    # Not only our client: a raw one with a valid certificate but no user is refused too.
    options = secured.files.options(HOST_IDENTITY)
    context = ssl.create_default_context(cafile=options["ca"])
    context.load_cert_chain(options["cert"], options["key"])
    raw = aiomqtt.Client(secured.broker.host, secured.broker.port, tls_context=context, timeout=5)
    with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):
        async with raw:
            pass


@pytest.mark.asyncio
async def test_wrong_password_is_refused(secured: Secured, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    url = secured.url("room1/injector", HOST_IDENTITY, password_file=str(wrong))
    with pytest.raises(LinkError, match=r"refused user 'host'.*Not authorized"):
        await open_link(url).open()
    # Another identity's password is as wrong as any other.
    injector_password = str(secured.files.passwords["injector"])
    url = secured.url("room1/injector", HOST_IDENTITY, password_file=injector_password)
    with pytest.raises(LinkError, match="refused user 'host'"):
        await open_link(url).open()


@pytest.mark.asyncio
async def test_client_without_tls_or_trusted_certificate_fails(
    secured: Secured, tmp_path: Path
) -> None:
    b = secured.broker
    with pytest.raises(LinkError, match="closed the connection before accepting it"):
        await open_link(f"mqtt://{b.host}:{b.port}/room1/injector").open()
    # No client certificate: the broker's handshake requires one.
    url = secured.url("room1/injector", HOST_IDENTITY, cert=None, key=None)
    with pytest.raises(LinkError, match="requires a client certificate"):
        await open_link(url).open()
    # A certificate from another CA, with the right password: refused by the broker.
    other = LocalPki(tmp_path / "other-ca").ensure([HOST_IDENTITY])
    stranger = other.credential(HOST_IDENTITY)
    url = secured.url(
        "room1/injector", HOST_IDENTITY, cert=str(stranger.cert), key=str(stranger.key)
    )
    with pytest.raises(LinkError, match="TLS"):
        await open_link(url).open()
    # The broker's certificate checked against another CA: we refuse the broker.
    url = secured.url("room1/injector", HOST_IDENTITY, ca=str(other.ca))
    with pytest.raises(LinkError, match="certificate is not trusted by the CA in"):
        await open_link(url).open()


def test_broker_is_tls_only_on_loopback(secured: Secured) -> None:
    conf = (secured.broker._dir / "mosquitto.conf").read_text().splitlines()
    assert [line for line in conf if line.startswith("listener")] == [
        f"listener {secured.broker.port} 127.0.0.1"
    ]
    assert "allow_anonymous false" in conf and "require_certificate true" in conf


# -- the ACL: each identity only its own topics -----------------------------------------------
async def _forbidden_publish(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
    """Publish at QoS 1: Mosquitto acknowledges even a denied publish (MQTT 3.1.1), so when
    this returns the broker has handled (and, by its ACL, dropped) the message."""
    await client.publish(topic, payload, qos=1)


@pytest.mark.asyncio
async def test_host_cannot_publish_on_a_devices_up_topic(secured: Secured, watch: Watchers) -> None:
    async with secured.client(HOST_IDENTITY) as reader, secured.client(HOST_IDENTITY) as host:
        seen = await watch.start(reader, "room1/injector/up")
        async with secured.client("injector") as device:
            await _forbidden_publish(host, "room1/injector/up", b"forged faulted event")
            await device.publish("room1/injector/up", b"genuine", qos=1)
            await until(seen, ("room1/injector/up", b"genuine"))
    assert seen == [("room1/injector/up", b"genuine")]


@pytest.mark.asyncio
async def test_device_cannot_publish_on_down_or_another_devices_topics(
    secured: Secured, watch: Watchers
) -> None:
    async with (
        secured.client("injector") as injector_reader,
        secured.client("carm") as carm_reader,
        secured.client(HOST_IDENTITY) as host_reader,
        secured.client(HOST_IDENTITY) as host,
        secured.client("carm") as carm,
        secured.client("injector") as intruder,
    ):
        own_down = await watch.start(injector_reader, "room1/injector/down")
        carm_down = await watch.start(carm_reader, "room1/carm/down")
        carm_up = await watch.start(host_reader, "room1/carm/up")
        # The injector's identity forges a command to itself, to the C-arm, and an event
        # from the C-arm.
        await _forbidden_publish(intruder, "room1/injector/down", b"start injection 500 mL")
        await _forbidden_publish(intruder, "room1/carm/down", b"expose 150 kV")
        await _forbidden_publish(intruder, "room1/carm/up", b"forged carm event")
        await host.publish("room1/injector/down", b"host command", qos=1)
        await host.publish("room1/carm/down", b"host command", qos=1)
        await carm.publish("room1/carm/up", b"carm event", qos=1)
        await until(own_down, ("room1/injector/down", b"host command"))
        await until(carm_down, ("room1/carm/down", b"host command"))
        await until(carm_up, ("room1/carm/up", b"carm event"))
    assert own_down == [("room1/injector/down", b"host command")]
    assert carm_down == [("room1/carm/down", b"host command")]
    assert carm_up == [("room1/carm/up", b"carm event")]


@pytest.mark.asyncio
async def test_device_cannot_read_another_devices_commands(
    secured: Secured, watch: Watchers
) -> None:
    async with (
        secured.client("injector") as snoop,
        secured.client("carm") as carm,
        secured.client(HOST_IDENTITY) as host,
    ):
        snooped = await watch.start(snoop, "room1/carm/down")
        legit = await watch.start(carm, "room1/carm/down")
        await host.publish("room1/carm/down", b"expose", qos=1)
        await until(legit, ("room1/carm/down", b"expose"))
        # A round trip on the snoop's own connection: whatever the broker sent it before
        # this acknowledgement has been read (one TCP stream, in order).
        await snoop.publish("room1/injector/up", b"barrier", qos=1)
        await asyncio.sleep(0.05)  # let the recording task take what was read
    assert snooped == []
