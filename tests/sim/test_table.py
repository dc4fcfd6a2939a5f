import asyncio

import pytest

from drivers import Clock, DeviceStateError, DeviceTimeout, TablePosition
from hardware_sim.table import SimTable, travel_time_s, travelled


def test_trapezoid_profile():
    # 300 mm at 100 mm/s, 200 mm/s²: two 0.5 s ramps cover 50 mm, then 250 mm take 2.5 s.
    assert travel_time_s(300, 100, 200) == pytest.approx(3.5)
    # Short move never reaches v_max: triangular profile.
    assert travel_time_s(20, 100, 200) == pytest.approx(2 * (20 / 200) ** 0.5)
    assert travelled(300, 0.5, 100, 200) == pytest.approx(25.0)
    assert travelled(300, 1.5, 100, 200) == pytest.approx(125.0)
    assert travelled(-300, 3.5, 100, 200) == pytest.approx(-300.0)
    samples = [travelled(300, t / 10, 100, 200) for t in range(36)]
    assert samples == sorted(samples)  # monotonic, no overshoot


def test_move_takes_loop_time_and_reports_completion(run_virtual):
    events = []

    async def main():
        clock = Clock.for_running_loop()
        table = SimTable("table", clock)
        table.subscribe(events.append)
        t0 = clock.now()
        mid = asyncio.get_running_loop().call_later(
            1.5, lambda: mids.append(table.position_at(clock.now()))
        )
        status = await table.move_to(TablePosition(longitudinal_mm=300))
        del mid
        return clock.now() - t0, status

    mids = []
    elapsed, status = run_virtual(main)
    assert elapsed == pytest.approx(3.5)
    assert status.moving is False
    assert status.position.longitudinal_mm == 300
    assert status.motion_completed_at_s == pytest.approx(3.5)
    assert mids[0].longitudinal_mm == pytest.approx(125.0)
    assert [e.kind for e in events] == ["motion_started", "motion_complete"]


def test_stop_halts_mid_move_and_move_reports_it(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        table = SimTable("table", clock)
        mover = asyncio.create_task(table.move_to(TablePosition(longitudinal_mm=300)))
        await asyncio.sleep(1.0)
        await table.stop()
        with pytest.raises(DeviceStateError, match="stopped before the target"):
            await mover
        return await table.status()

    status = run_virtual(main)
    assert status.moving is False
    assert status.position.longitudinal_mm == pytest.approx(75.0)


def test_move_bound_derived_from_distance(run_virtual):
    async def main():
        clock = Clock.for_running_loop()
        table = SimTable("table", clock)
        table.max_speed_mm_s = 10.0  # the device is slower than the driver believes
        with pytest.raises(DeviceTimeout):
            await table.move_to(TablePosition(longitudinal_mm=300), timeout_s=5.0)

    run_virtual(main)
