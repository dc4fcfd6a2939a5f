"""Hazard: at --time-scale N the abort's per-device bound was loop time, so at 60× a device on
a real link (answering in a few wall milliseconds) was never confirmed safe.

Safety bounds are wall-clock durations whatever the time scale.
"""

from __future__ import annotations

import asyncio
import contextlib

from drivers import Clock, new_event_loop
from drivers.backends import DeviceSet
from scheduler.room import Room
from scheduler.safety import ABORT_STEP_TIMEOUT_S, abort_all, abort_step_bound_s

from ._mockroom import MOCK_ROOM, journal, make_runner, mock_devices

SCALE = 60.0
LINK_WALL_S = 0.005  # a safe-state command answered after 5 ms of wall time
REAL_ROOM = Room.model_validate({**MOCK_ROOM.model_dump(), "clock": "real"})


def scaled_devices() -> DeviceSet:
    devices, _ = mock_devices(Clock.for_running_loop(), LINK_WALL_S * SCALE)
    return devices


def test_devices_answering_in_wall_milliseconds_are_confirmed_at_60x():
    loop = new_event_loop("scaled", time_scale=SCALE)
    try:
        report = loop.run_until_complete(_abort(scaled_devices))
    finally:
        loop.close()
    assert report.confirmed == {"injector": "safe", "carm": "safe", "table": "safe"}
    # loop time ran 60× faster than the wall while the three devices answered
    assert report.duration_s >= 3 * LINK_WALL_S * SCALE


def test_a_hung_device_is_bounded_and_the_others_still_made_safe():
    loop = new_event_loop("scaled", time_scale=SCALE)

    def devices() -> DeviceSet:
        d = scaled_devices()
        d.carm.hang = {"beam_off"}  # type: ignore[attr-defined]
        return d

    try:
        report = loop.run_until_complete(_abort(devices))
    finally:
        loop.close()
    assert report.confirmed["injector"] == "safe"
    assert report.confirmed["table"] == "safe"
    bound_ms = ABORT_STEP_TIMEOUT_S * 1000
    assert report.confirmed["carm"] == f"unconfirmed: no answer within {bound_ms:.0f} ms"


def test_the_bound_grants_part_of_a_real_links_allowance_in_wall_time():
    loop = new_event_loop("scaled", time_scale=SCALE)
    try:
        devices = loop.run_until_complete(_make(scaled_devices))
    finally:
        loop.close()
    devices.carm.latency_allowance_s = 3.0 * SCALE  # an image link's 3 s, in loop seconds
    assert abort_step_bound_s(devices.carm, SCALE) == ABORT_STEP_TIMEOUT_S + 0.1
    assert abort_step_bound_s(devices.table, SCALE) == ABORT_STEP_TIMEOUT_S


def test_an_interrupted_exam_at_60x_confirms_every_device(tmp_path):
    """The engine hands its clock's scale to the abort."""
    loop = new_event_loop("scaled", time_scale=SCALE)
    out = tmp_path / "exam"
    out.mkdir()

    async def scenario() -> None:
        scout = asyncio.Event()
        runner = make_runner(
            out, scaled_devices(), room=REAL_ROOM, on_capture=lambda _record: scout.set()
        )
        task = asyncio.create_task(runner.run())
        await scout.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    abort = next(e for e in journal(out) if e["kind"] == "abort")
    assert abort["data"]["confirmed"] == {"injector": "safe", "carm": "safe", "table": "safe"}


async def _make(factory):  # type: ignore[no-untyped-def]
    return factory()


async def _abort(factory):  # type: ignore[no-untyped-def]
    return await abort_all(factory(), time_scale=SCALE)
