"""A scaled or real loop continues another process's time axis from the recorded origin."""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers import Clock, ScaledTimeEventLoop, VirtualTimeEventLoop, new_event_loop


def test_a_loop_made_later_with_the_same_origin_reads_the_same_time():
    first = ScaledTimeEventLoop(60.0)
    try:
        time.sleep(0.05)
        origin = first.origin_monotonic
        second = ScaledTimeEventLoop(60.0, origin_monotonic=origin)
        try:
            a, b = first.time(), second.time()
            # 50 ms of wall at 60× is 3 s of loop time: the second loop did not start at 0.
            assert b >= 3.0
            assert abs(b - a) < 60.0 * 0.005
        finally:
            second.close()
    finally:
        first.close()


def test_without_an_origin_a_new_loop_starts_at_zero():
    made_after = time.monotonic()
    loop = ScaledTimeEventLoop(60.0)
    try:
        now = loop.time()
        read_by = time.monotonic()
        # Zero when made: at most the wall time since then, 60 times over, has passed.
        assert 0.0 <= now <= 60.0 * (read_by - made_after)
    finally:
        loop.close()


def test_an_origin_from_the_future_is_refused():
    with pytest.raises(ValueError, match="another boot"):
        ScaledTimeEventLoop(10.0, origin_monotonic=time.monotonic() + 3600.0)


@pytest.mark.parametrize(
    ("make", "mode"),
    [
        (lambda: new_event_loop("scaled", time_scale=30.0), "scaled"),
        (lambda: new_event_loop("real"), "real"),
        (VirtualTimeEventLoop, "virtual"),
    ],
)
def test_the_clock_mapping_round_trips_to_an_equal_time_axis(make, mode):
    loop = make()
    try:
        mapping = Clock(loop).mapping
        assert mapping["mode"] == mode
        if mode == "virtual":
            assert mapping["origin_monotonic"] is None
            return
        again = new_event_loop(
            "scaled", time_scale=mapping["scale"], origin_monotonic=mapping["origin_monotonic"]
        )
        try:
            # The same time axis: read between two readings of the original, the new loop's
            # time lies between them (to float rounding), however long the machine paused.
            before, same, after = loop.time(), again.time(), loop.time()
            rounding = mapping["scale"] * 2e-6  # a real loop's origin is kept to the µs
            assert before - rounding <= same <= after + rounding
        finally:
            again.close()
        if mode == "real":
            assert mapping["origin_monotonic"] == pytest.approx(0.0, abs=1e-3)
    finally:
        loop.close()


def test_sleep_until_on_a_continued_axis_wakes_on_the_absolute_deadline():
    origin = time.monotonic() - 1.0  # the "crashed" process began a second ago
    loop = ScaledTimeEventLoop(20.0, origin_monotonic=origin)

    async def go() -> float:
        clock = Clock.for_running_loop()
        assert clock.now() >= 20.0
        deadline = clock.now() + 2.0  # 100 ms of wall
        late = await clock.sleep_until(deadline)
        return late

    try:
        late = loop.run_until_complete(go())
        assert 0.0 <= late < 20.0 * 0.05
    finally:
        loop.close()
    asyncio.set_event_loop(None)
