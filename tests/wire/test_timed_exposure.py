"""Device-timed exposures over the wire (decision 0016), on virtual time.

RemoteCArm → WireClient → MemoryCable → DeviceEndpoint → CArmService → SimCArm: the C-arm
declares its latencies, arms ``expose`` with ``at_t_s`` on its own clock, refuses a time point
too close or a clock sync it cannot trust, and never fires after ``beam_off`` or a host that
fell silent before the time point.
"""

from __future__ import annotations

import asyncio

import pytest

from drivers import DeviceFault, Technique
from drivers.carm import (
    TRIGGER_CANCELLED,
    TRIGGER_PAST,
    TRIGGER_SYNC,
    CArmCapabilities,
)
from drivers.wire import Status
from hardware_sim.carm import EXPOSURE_LATENCY_S, MAX_SYNC_S, READOUT_S
from tests.wire.test_remote_drivers import run, wired_room

TECHNIQUE = Technique(75.0, 400.0, 50.0)


def test_the_c_arm_declares_its_latencies_over_the_wire() -> None:
    async def go() -> None:
        async with wired_room() as w:
            caps = await w.carm.capabilities()
            assert caps == CArmCapabilities(
                exposure_latency_s=EXPOSURE_LATENCY_S,
                readout_s=READOUT_S,
                timed_trigger=True,
                max_sync_s=MAX_SYNC_S,
            )
            assert caps == await w.sim.carm.capabilities()

    run(go)


def test_timed_exposure_beam_comes_on_at_the_time_point_not_a_latency_later() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            at = asyncio.get_running_loop().time() + 0.4
            task = asyncio.create_task(w.carm.expose(at_s=at))
            await asyncio.sleep(0.2)
            assert (await w.carm.status()).armed  # the device says so, before the time point
            frame = await task
            # the device's beam-on stamp, mapped onto the host clock
            assert frame.acquired_at_s == pytest.approx(at, abs=1e-6)
            status = await w.carm.status()
            assert not status.armed
            assert status.cumulative_reference_air_kerma_mgy == pytest.approx(
                frame.dose.reference_air_kerma_mgy
            )

    run(go)


def test_a_time_point_inside_the_exposure_latency_is_refused_and_nothing_fires() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            at = asyncio.get_running_loop().time() + EXPOSURE_LATENCY_S / 2
            with pytest.raises(DeviceFault) as caught:
                await w.carm.expose(at_s=at)
            assert caught.value.fault == TRIGGER_PAST
            await asyncio.sleep(0.5)
            status = await w.carm.status()
            assert status.cumulative_reference_air_kerma_mgy == 0.0 and not status.armed

    run(go)


def test_the_device_refuses_a_missing_or_too_uncertain_clock_sync() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            service = w.services["carm"]
            at = asyncio.get_running_loop().time() + 1.0
            for sync in ({}, {"sync_s": MAX_SYNC_S * 2}):
                status, fields = await service.handle(  # type: ignore[attr-defined]
                    "expose", {"op_id": 900, "at_t_s": at, **sync}
                )
                assert status is Status.FAULT and fields["fault"] == TRIGGER_SYNC, fields
            await asyncio.sleep(1.5)
            device = await w.sim.carm.status()
            assert device.cumulative_reference_air_kerma_mgy == 0.0

    run(go)


def test_the_host_driver_sends_nothing_when_its_sync_is_too_uncertain() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            client = w.carm._channel
            # a link whose round trips never pin the offset down better than ±1 s
            client.clock_sync = lambda: (1.0, 0.0)  # type: ignore[method-assign]
            client.sync_clock = _no_sync  # type: ignore[method-assign]
            assert "clock offset" in (await w.carm.timed_trigger_ready() or "")
            with pytest.raises(DeviceFault) as caught:
                await w.carm.expose(at_s=asyncio.get_running_loop().time() + 1.0)
            assert caught.value.fault == TRIGGER_SYNC
            await asyncio.sleep(1.5)
            assert w.services["carm"]._last_op_id is None  # no expose reached the device
            device = await w.sim.carm.status()
            assert device.cumulative_reference_air_kerma_mgy == 0.0

    run(go)


async def _no_sync(exchanges: int = 4) -> None:
    """A link whose pings never improve the estimate."""


def test_beam_off_disarms_a_pending_timed_exposure_and_the_device_confirms() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            at = asyncio.get_running_loop().time() + 1.0
            task = asyncio.create_task(w.carm.expose(at_s=at))
            await asyncio.sleep(0.3)
            assert (await w.carm.status()).armed
            reply = await w.carm._channel.call("beam_off")
            assert reply["disarmed"] is True
            with pytest.raises(DeviceFault) as caught:
                await task
            assert caught.value.fault == TRIGGER_CANCELLED
            await asyncio.sleep(1.0)  # past the time point: nothing fired
            status = await w.carm.status()
            assert not status.armed and status.cumulative_reference_air_kerma_mgy == 0.0

    run(go)


def test_a_cancelled_wait_disarms_the_device() -> None:
    """The step ended (abort, skip) while its exposure was armed: the driver disarms it."""

    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            at = asyncio.get_running_loop().time() + 1.0
            task = asyncio.create_task(w.carm.expose(at_s=at))
            await asyncio.sleep(0.3)
            assert (await w.sim.carm.status()).armed
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(1.0)
            device = await w.sim.carm.status()
            assert not device.armed and device.cumulative_reference_air_kerma_mgy == 0.0

    run(go)


def test_a_link_lost_before_the_time_point_leaves_nothing_armed() -> None:
    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            at = asyncio.get_running_loop().time() + 0.8
            task = asyncio.create_task(w.carm.expose(at_s=at))
            await asyncio.sleep(0.1)
            assert (await w.sim.carm.status()).armed
            w.cables["carm"].blackhole = True  # cut silently: the device hears nothing more
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(2.0)
            device = await w.sim.carm.status()
            assert not device.armed and device.cumulative_reference_air_kerma_mgy == 0.0

    run(go)


def test_an_armed_exposure_does_not_fire_when_the_host_fell_silent_just_before() -> None:
    """Silent for longer than the arming guard but not yet the 1 s loss bound (no SAFE yet)."""

    async def go() -> None:
        async with wired_room() as w:
            await w.carm.set_technique(TECHNIQUE)
            disarmed: list[str] = []
            w.sim.carm.subscribe(
                lambda e: (
                    disarmed.append(str(e.data["reason"]))
                    if e.kind == "exposure_disarmed"
                    else None
                )
            )
            at = asyncio.get_running_loop().time() + 0.7
            task = asyncio.create_task(w.carm.expose(at_s=at))
            await asyncio.sleep(0.05)
            w.cables["carm"].blackhole = True
            await asyncio.sleep(at - asyncio.get_running_loop().time() + 0.05)
            # the guard acted at the time point, before the 1 s loss bound put it in SAFE
            assert not w.endpoints["carm"].safe
            assert len(disarmed) == 1 and "silent" in disarmed[0]
            await asyncio.gather(task, return_exceptions=True)
            device = await w.sim.carm.status()
            assert device.cumulative_reference_air_kerma_mgy == 0.0

    run(go)
