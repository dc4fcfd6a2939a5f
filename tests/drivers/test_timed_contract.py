"""The C-arm contract's capabilities and timed exposure (decision 0016), on virtual time; the
precise trigger timer's switch interval on real time."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from drivers import Clock, DeviceStateError, Technique
from drivers.carm import CArmCapabilities
from drivers.mock import CallLog, MockCArm
from drivers.timer import sleep_until_precise

TECHNIQUE = Technique(75.0, 400.0, 50.0)


def test_a_c_arm_that_declares_nothing_has_no_latency_and_no_timed_trigger(run_virtual) -> None:
    async def go() -> None:
        carm = MockCArm("carm", Clock.for_running_loop(), CallLog())
        await carm.set_technique(TECHNIQUE)
        assert await carm.capabilities() == CArmCapabilities()
        assert await carm.timed_trigger_ready() == "this C-arm has no timed trigger"
        with pytest.raises(DeviceStateError):
            await carm.expose(at_s=asyncio.get_running_loop().time() + 1.0)

    run_virtual(go)


def test_a_timed_c_arm_is_bounded_by_the_wait_to_its_time_point(run_virtual) -> None:
    async def go() -> None:
        clock = Clock.for_running_loop()
        carm = MockCArm("carm", clock, CallLog())
        carm.caps = CArmCapabilities(exposure_latency_s=0.02, timed_trigger=True)
        await carm.set_technique(TECHNIQUE)
        assert await carm.timed_trigger_ready() is None
        # 10 s ahead: longer than the default exposure bound, which the wait is added to
        at = clock.now() + 10.0
        frame = await carm.expose(at_s=at)
        assert frame.acquired_at_s == at

    run_virtual(go)


def test_capabilities_are_range_checked() -> None:
    with pytest.raises(ValueError, match="exposure_latency_s"):
        CArmCapabilities(exposure_latency_s=-0.01)


def test_the_precise_timer_is_exact_on_virtual_time(run_virtual) -> None:
    async def go() -> float:
        clock = Clock.for_running_loop()
        return await sleep_until_precise(clock, clock.now() + 0.5)

    assert run_virtual(go) == 0.0


def test_the_precise_timer_shortens_the_thread_switch_interval_only_while_it_polls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A thread running Python keeps the GIL for up to the switch interval after the trigger
    # hands it over; while a trigger polls, that must be well under a millisecond. What the
    # interval is at each hand-over (the poll's zero sleep) is recorded.
    from drivers import timer

    seen: list[float] = []
    real_sleep = time.sleep
    polling_thread = threading.get_ident()

    def hand_over(seconds: float) -> None:
        if seconds == 0 and threading.get_ident() == polling_thread:
            seen.append(sys.getswitchinterval())
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", hand_over)

    async def go() -> float:
        clock = Clock.for_running_loop()
        # a long poll (0.2 s) so that even a loaded machine polls many times
        return await sleep_until_precise(clock, clock.now() + 0.25, spin_s=0.2)

    before = sys.getswitchinterval()
    late = asyncio.run(go())
    monkeypatch.undo()
    assert late >= 0.0
    assert seen and max(seen) <= timer.SWITCH_S < before
    assert sys.getswitchinterval() == before
