import asyncio
import datetime as dt
import time

import pytest

from drivers import Clock, ScaledTimeEventLoop, VirtualTimeEventLoop, new_event_loop


def test_virtual_hour_never_waits_on_the_wall_and_fires_exactly():
    async def main():
        clock = Clock.for_running_loop()
        lateness = []
        for deadline in (12.0, 300.0, 600.0, 3600.0):
            lateness.append(await clock.sleep_until(deadline))
        return clock.now(), lateness

    loop = VirtualTimeEventLoop()
    # An hour of loop time must not take real time: every poll of the OS selector is a
    # non-blocking one (timeout 0), whatever the timers ask for.
    os_selector = loop._selector._inner  # type: ignore[attr-defined]
    polls: list[float | None] = []
    real_select = os_selector.select

    def spy(timeout=None):
        polls.append(timeout)
        return real_select(timeout)

    os_selector.select = spy
    try:
        now, lateness = loop.run_until_complete(main())
    finally:
        loop.close()
    assert now == pytest.approx(3600.0)
    assert lateness == [0.0, 0.0, 0.0, 0.0]
    assert polls and set(polls) == {0}


def test_virtual_time_stands_still_while_executor_work_runs(run_virtual):
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await loop.run_in_executor(None, time.sleep, 0.05)
        return loop.time() - t0

    assert run_virtual(main) == 0.0


def test_timeouts_use_virtual_time(run_virtual):
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.sleep(60)
        return loop.time() - t0

    assert run_virtual(main) == pytest.approx(30.0)


def test_concurrent_sleepers_interleave_in_deadline_order(run_virtual):
    order = []

    async def sleeper(name, delay):
        await asyncio.sleep(delay)
        order.append((name, asyncio.get_running_loop().time()))

    async def main():
        await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("b", 2.0))

    run_virtual(main)
    assert order == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


def test_real_time_wait_follows_the_wall(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        loop = asyncio.get_running_loop()
        t0 = clock.now()
        with clock.real_time_wait():
            await loop.run_in_executor(None, time.sleep, 0.1)
        return clock.now() - t0

    wall0 = time.monotonic()
    elapsed = run_virtual(main)
    wall = time.monotonic() - wall0
    # Loop time followed the wall through the 0.1 s wait (less the loop's own turns between
    # polls, which it does not count), and never ran ahead of it.
    assert 0.08 <= elapsed <= wall


def test_wall_clock_anchor_maps_loop_time():
    anchor = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    loop = VirtualTimeEventLoop(start=100.0)
    try:
        clock = Clock(loop, anchor)
        assert clock.wall_at(100.0) == anchor
        assert clock.wall_at(112.5) == anchor + dt.timedelta(seconds=12.5)
        with pytest.raises(ValueError):
            Clock(loop, dt.datetime(2026, 1, 1))
    finally:
        loop.close()


def test_scaled_loop_runs_faster_than_the_wall():
    loop = ScaledTimeEventLoop(50.0)
    try:

        async def main():
            w0 = time.monotonic()
            t0 = loop.time()
            w0_after = time.monotonic()
            await asyncio.sleep(5.0)  # 0.1 s of wall time at 50×
            w1 = time.monotonic()
            t1 = loop.time()
            w1_after = time.monotonic()
            return t1 - t0, (w1 - w0_after, w1_after - w0)

        sim, (wall_least, wall_most) = loop.run_until_complete(main())
    finally:
        loop.close()
    assert sim >= 5.0
    # Loop time is the wall's, 50 times faster: each loop reading is bracketed by two wall
    # readings, so the loop interval lies within 50 times the narrowest and widest wall one.
    assert 50.0 * wall_least - 1e-9 <= sim <= 50.0 * wall_most + 1e-9


def test_unknown_clock_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown clock mode"):
        new_event_loop("warp")
    with pytest.raises(ValueError):
        ScaledTimeEventLoop(0)
