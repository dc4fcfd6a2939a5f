"""MQTT links through a real Mosquitto started by the test (hardware_sim.broker)."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from drivers.links import LinkDown, LinkError, MqttLink, open_link
from drivers.wire import encode_frame
from hardware_sim.broker import Mosquitto, free_port
from hardware_sim.links import MqttDeviceLink

from .conftest import read_frames, request_reply_exchange, sample_replies, sample_request


@pytest.mark.asyncio
async def test_frames_round_trip_on_the_documented_topics(broker: Mosquitto) -> None:
    url = broker.url("room1/injector")
    seen: list[tuple[str, bytes]] = []

    async with aiomqtt.Client(broker.host, broker.port) as spy:
        await spy.subscribe("room1/injector/#")

        async def watch() -> None:
            async for message in spy.messages:
                assert isinstance(message.payload, bytes)
                seen.append((str(message.topic), message.payload))

        watcher = asyncio.create_task(watch())
        device = MqttDeviceLink(url)
        host = open_link(url)
        assert isinstance(host, MqttLink) and host.role == "host"
        await device.open()
        await host.open()
        await request_reply_exchange(host, device)
        await asyncio.sleep(0.1)
        watcher.cancel()
        await host.close()
        await device.close()

    # Host publishes to <prefix>/down, the device to <prefix>/up, one frame per message.
    assert seen == [("room1/injector/down", encode_frame(sample_request()))] + [
        ("room1/injector/up", encode_frame(f)) for f in sample_replies()
    ]


@pytest.mark.asyncio
async def test_one_write_is_one_read(broker: Mosquitto) -> None:
    url = broker.url("room1/injector")
    async with MqttLink(url, role="device") as device, open_link(url) as host:
        payloads = [bytes([i]) * (i + 1) for i in range(20)]
        for p in payloads:
            await device.write(p)
        got = [await asyncio.wait_for(host.read(), 2.0) for _ in payloads]
        assert got == payloads


@pytest.mark.asyncio
async def test_broker_restart_is_link_down_then_reopen_works(broker: Mosquitto) -> None:
    url = broker.url("room1/injector")
    device = MqttDeviceLink(url)
    await device.open()
    host = open_link(url)
    await host.open()
    pending = asyncio.create_task(host.read())
    await asyncio.sleep(0.05)

    broker.stop()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(pending, 3.0)
    assert info.value.url == url
    assert f"broker 127.0.0.1:{broker.port}" in info.value.detail
    with pytest.raises(LinkDown):
        await host.write(b"into the void")
    assert not host.is_open
    await host.close()
    with pytest.raises(LinkError) as refused:
        await host.open()
    assert refused.value.detail == f"broker 127.0.0.1:{broker.port} refused connection"

    broker.start()  # same port
    await host.open()
    await device.wait_connected(5.0)  # the device side reconnected by itself
    assert device.reconnects >= 1
    frame = sample_request(seq=11)
    await host.write(encode_frame(frame))
    assert await read_frames(device, 1) == [frame]
    await device.write(encode_frame(sample_replies(seq=11)[0]))
    assert await read_frames(host, 1) == sample_replies(seq=11)[:1]
    await host.close()
    await device.close()


@pytest.mark.asyncio
async def test_refused_connection_names_the_broker() -> None:
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}/room1/injector"
    with pytest.raises(LinkError) as info:
        await open_link(url).open()
    assert info.value.url == url
    assert info.value.detail == f"broker 127.0.0.1:{port} refused connection"


@pytest.mark.asyncio
async def test_device_link_closed_read_is_link_down(broker: Mosquitto) -> None:
    device = MqttDeviceLink(broker.url("room1/injector"))
    await device.open()
    pending = asyncio.create_task(device.read())
    await asyncio.sleep(0)
    await device.close()
    with pytest.raises(LinkDown):
        await asyncio.wait_for(pending, 1.0)


def test_broker_restart_keeps_the_port_and_missing_binary_says_what_to_install(
    broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = broker.port
    broker.restart()
    assert broker.running and broker.port == port and broker.restarts == 1
    assert broker.url("/a/b/") == f"mqtt://127.0.0.1:{port}/a/b"

    import hardware_sim.broker as mod

    monkeypatch.setattr(mod.shutil, "which", lambda _name: None)
    monkeypatch.setattr(mod, "FALLBACK_PATH", "/nonexistent/mosquitto")
    with pytest.raises(mod.MosquittoError, match="install Debian package mosquitto"):
        Mosquitto()


def test_a_cancel_swallowed_inside_aiomqtts_publish_still_reaches_the_caller() -> None:
    # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) returns normally when the
    # publish completes as the caller is cancelled; an exam's Ctrl-C must not be lost there.
    class SwallowingClient:
        async def publish(self, *args: object, **kwargs: object) -> None:
            try:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                return None  # the publish "completed" in the same moment

    async def go() -> None:
        link = MqttLink("mqtt://127.0.0.1:1/room/carm")
        link._client = SwallowingClient()  # type: ignore[assignment]
        writing = asyncio.create_task(link.write(b"frame"))
        await asyncio.sleep(0.01)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing

    asyncio.run(go())
