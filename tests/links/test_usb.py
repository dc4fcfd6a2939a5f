"""USB bulk links through the real pyusb API, against the simulated gadget (hardware_sim)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import numpy as np
import pytest
import pytest_asyncio
import usb.core
import usb.util

from drivers.links import USB_BACKENDS_GROUP, LinkDown, LinkError, UsbLink, open_link
from drivers.wire import BulkAssembler, BulkComplete, bulk_chunks, encode_frame
from hardware_sim.links import UsbGadget
from hardware_sim.usb_backend import SimUsbBackend, sim_backend

from .conftest import read_exactly, read_frames, request_reply_exchange, sample_request


@pytest_asyncio.fixture
async def gadget() -> AsyncIterator[UsbGadget]:
    g = UsbGadget(0x1209, 0xF10C)
    await g.open()
    yield g
    await g.close()


def test_sim_backend_is_registered_as_entry_point() -> None:
    (ep,) = [e for e in entry_points(group=USB_BACKENDS_GROUP) if e.name == "sim"]
    backend = ep.load()({"host": "127.0.0.1", "port": "1"})
    assert isinstance(backend, SimUsbBackend) and backend.port == 1
    with pytest.raises(ValueError, match="unknown sim backend option"):
        sim_backend({"port": "1", "speed": "high"})


@pytest.mark.asyncio
async def test_pyusb_find_configure_and_transfer(gadget: UsbGadget) -> None:
    def host_side() -> tuple[bytes, float]:
        backend = sim_backend({"port": str(gadget.port)})
        dev = usb.core.find(idVendor=0x1209, idProduct=0xF10C, backend=backend)
        assert dev is not None
        assert (dev.idVendor, dev.idProduct) == (0x1209, 0xF10C)
        assert usb.core.find(idVendor=0x1209, idProduct=0x0001, backend=backend) is None
        dev.set_configuration()
        intf = dev.get_active_configuration()[(0, 0)]
        eps = [
            (e.bEndpointAddress, usb.util.endpoint_direction(e.bEndpointAddress))
            for e in intf
            if usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
        ]
        assert eps == [(0x01, usb.util.ENDPOINT_OUT), (0x81, usb.util.ENDPOINT_IN)]
        assert dev.write(0x01, b"ping", 1000) == 4
        got = dev.read(0x81, 64, 2000)
        # An empty IN pipe times out after about the timeout asked for, not sooner or later.
        t0 = time.monotonic()
        with pytest.raises(usb.core.USBTimeoutError):
            dev.read(0x81, 64, 100)
        elapsed = time.monotonic() - t0
        usb.util.dispose_resources(dev)
        return bytes(got), elapsed

    async def device_side() -> None:
        assert await gadget.read() == b"ping"
        await gadget.write(b"pong")

    (got, elapsed), _ = await asyncio.gather(asyncio.to_thread(host_side), device_side())
    assert got == b"pong"
    assert 0.09 <= elapsed < 1.0


@pytest.mark.asyncio
async def test_frames_round_trip(gadget: UsbGadget) -> None:
    host = open_link(gadget.host_url)
    assert isinstance(host, UsbLink)
    async with host:
        await request_reply_exchange(host, gadget)
        assert gadget.host_attached  # the host's IN polls are attached from its first read


@pytest.mark.asyncio
async def test_two_mebibytes_round_trip(gadget: UsbGadget) -> None:
    data = os.urandom(2 << 20)
    async with open_link(gadget.host_url) as host:
        await host.write(data)
        received = await read_exactly(gadget, len(data))
        assert received == data
        await gadget.write(received)  # echoed back over IN
        assert await read_exactly(host, len(data)) == data


@pytest.mark.asyncio
async def test_image_as_bulk_chunks(gadget: UsbGadget) -> None:
    image = np.random.default_rng(3).integers(0, 4096, (1024, 1024), dtype=np.uint16)
    frames = bulk_chunks(77, image.tobytes(), device=4)
    async with open_link(gadget.host_url) as host:
        await gadget.write(b"".join(encode_frame(f) for f in frames))
        received = await read_frames(host, len(frames))
    assembler = BulkAssembler()
    results = [assembler.add(f, 0.0) for f in received]
    assert all(r is None for r in results[:-1])
    done = results[-1]
    assert isinstance(done, BulkComplete) and (done.device, done.transfer_id) == (4, 77)
    assert np.array_equal(np.frombuffer(done.data, dtype=np.uint16).reshape(1024, 1024), image)


@pytest.mark.asyncio
async def test_failed_in_transfer_is_link_down_then_reopen(gadget: UsbGadget) -> None:
    host = open_link(gadget.host_url)
    await host.open()
    gadget.fail_next_transfers(1, endpoint=0x81)
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(host.read(), 2.0)
    assert info.value.url == gadget.host_url
    assert "bulk read from 0x81 failed" in info.value.detail
    assert "injected transfer failure" in info.value.detail
    assert not host.is_open and gadget.transfers_failed == 1
    await host.close()

    frame = sample_request(seq=3)
    await gadget.write(encode_frame(frame))  # written while the host is away: kept
    await host.open()
    assert await read_frames(host, 1) == [frame]
    await host.close()


@pytest.mark.asyncio
async def test_failed_out_transfer_is_link_down_and_nothing_arrives(gadget: UsbGadget) -> None:
    host = open_link(gadget.host_url)
    await host.open()
    gadget.fail_next_transfers(1, endpoint=0x01)
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(host.write(b"lost"), 2.0)
    assert info.value.url == gadget.host_url
    assert "bulk write to 0x01 failed" in info.value.detail
    assert "injected transfer failure (OUT)" in info.value.detail
    with pytest.raises(LinkDown):
        await host.write(b"still down")  # down until reopened
    await host.close()
    await host.open()
    await host.write(b"kept")
    assert await asyncio.wait_for(gadget.read(), 2.0) == b"kept"
    await host.close()


@pytest.mark.asyncio
async def test_pulled_cable_and_missing_device(gadget: UsbGadget) -> None:
    host = open_link(gadget.host_url)
    await host.open()
    pending = asyncio.create_task(host.read())
    await gadget.wait_host(2.0)  # the host is polling IN
    gadget.drop_host()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(pending, 2.0)
    assert "No such device" in info.value.detail
    await host.close()
    await host.open()  # plugged back: found again
    await gadget.write(b"back")
    assert await read_exactly(host, 4) == b"back"
    await host.close()

    await gadget.close()
    with pytest.raises(LinkError) as missing:
        await host.open()
    assert missing.value.detail.startswith("USB device 1209:f10c not found")
    assert f"127.0.0.1:{gadget.port}" in missing.value.detail


@pytest.mark.asyncio
async def test_close_with_a_read_in_flight_is_prompt(gadget: UsbGadget) -> None:
    host = open_link(gadget.host_url)
    await host.open()
    pending = asyncio.create_task(host.read())
    await asyncio.sleep(0.02)
    t0 = time.monotonic()
    await host.close()
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(LinkDown):
        await asyncio.wait_for(pending, 1.0)


@pytest.mark.asyncio
async def test_cancelled_read_loses_no_bytes(gadget: UsbGadget) -> None:
    async with open_link(gadget.host_url) as host:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(host.read(), 0.01)  # the poll keeps running in its thread
        await gadget.write(b"after the cancel")
        assert await read_exactly(host, 16) == b"after the cancel"


@pytest.mark.asyncio
async def test_unknown_backend_names_the_entry_point_group() -> None:
    url = "usb://1209:f10c?backend=nosuch&port=1"
    with pytest.raises(LinkError) as info:
        await open_link(url).open()
    assert info.value.url == url
    assert "no USB backend 'nosuch'" in info.value.detail
    assert USB_BACKENDS_GROUP in info.value.detail and "sim" in info.value.detail


@pytest.mark.asyncio
async def test_default_backend_reports_a_link_error_not_a_crash() -> None:
    # No backend= : pyusb's own (libusb). Here either libusb is missing or no such device.
    url = "usb://1209:fffe"
    with pytest.raises(LinkError) as info:
        await open_link(url).open()
    assert info.value.url == url
    detail = info.value.detail
    assert detail.startswith(("no pyusb backend available", "USB device 1209:fffe not found"))
