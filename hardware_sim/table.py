"""Simulated patient table: trapezoidal velocity profiles, so a move takes real (loop) time."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

from drivers import (
    Clock,
    DeviceEvent,
    DeviceFault,
    DeviceStateError,
    Table,
    TablePosition,
    TableStatus,
)


def travel_time_s(distance: float, v_max: float, accel: float) -> float:
    """Duration of a rest-to-rest trapezoidal (or triangular) move."""
    d = abs(distance)
    if d == 0:
        return 0.0
    d_ramp = v_max * v_max / accel  # accelerate + decelerate to and from v_max
    if d <= d_ramp:
        return 2.0 * math.sqrt(d / accel)
    return 2.0 * v_max / accel + (d - d_ramp) / v_max


def travelled(distance: float, elapsed: float, v_max: float, accel: float) -> float:
    """Signed distance covered ``elapsed`` seconds into the move."""
    total = travel_time_s(distance, v_max, accel)
    if elapsed >= total:
        return distance
    sign = 1.0 if distance >= 0 else -1.0
    d = abs(distance)
    t_acc = min(v_max / accel, total / 2.0)
    v_peak = accel * t_acc
    if elapsed <= t_acc:
        s = 0.5 * accel * elapsed**2
    elif elapsed <= total - t_acc:
        s = 0.5 * accel * t_acc**2 + v_peak * (elapsed - t_acc)
    else:
        remaining = total - elapsed
        s = d - 0.5 * accel * remaining**2
    return sign * s


class SimTable(Table):
    max_speed_mm_s = 100.0
    accel_mm_s2 = 200.0
    tilt_speed_deg_s = 5.0
    vertical_speed_mm_s = 30.0

    def __init__(self, name: str, clock: Clock) -> None:
        super().__init__(name)
        self._clock = clock
        self._position = TablePosition()
        self._move: tuple[TablePosition, TablePosition, float, float] | None = None
        self._completed_at: float | None = None
        self._move_done: asyncio.Event = asyncio.Event()
        self._motion_task: asyncio.Task[None] | None = None
        self.faults: tuple[str, ...] = ()
        self._stall_next = False

    # The position during a move is computed from the profile, not polled: exact at any time.
    def position_at(self, t: float) -> TablePosition:
        if self._move is None:
            return self._position
        start, target, t_start, duration = self._move
        elapsed = t - t_start
        if elapsed >= duration:
            return target
        return TablePosition(
            longitudinal_mm=start.longitudinal_mm
            + travelled(
                target.longitudinal_mm - start.longitudinal_mm,
                elapsed,
                self.max_speed_mm_s,
                self.accel_mm_s2,
            ),
            lateral_mm=start.lateral_mm
            + travelled(
                target.lateral_mm - start.lateral_mm, elapsed, self.max_speed_mm_s, self.accel_mm_s2
            ),
            height_mm=start.height_mm
            + travelled(
                target.height_mm - start.height_mm,
                elapsed,
                self.vertical_speed_mm_s,
                self.accel_mm_s2,
            ),
            tilt_deg=start.tilt_deg
            + math.copysign(
                min(abs(target.tilt_deg - start.tilt_deg), elapsed * self.tilt_speed_deg_s),
                target.tilt_deg - start.tilt_deg,
            ),
        )

    @property
    def moving(self) -> bool:
        return self._move is not None

    def _duration(self, start: TablePosition, target: TablePosition) -> float:
        return max(
            travel_time_s(
                target.longitudinal_mm - start.longitudinal_mm,
                self.max_speed_mm_s,
                self.accel_mm_s2,
            ),
            travel_time_s(
                target.lateral_mm - start.lateral_mm, self.max_speed_mm_s, self.accel_mm_s2
            ),
            travel_time_s(
                target.height_mm - start.height_mm, self.vertical_speed_mm_s, self.accel_mm_s2
            ),
            abs(target.tilt_deg - start.tilt_deg) / self.tilt_speed_deg_s,
        )

    async def _move_to(self, target: TablePosition) -> TableStatus:
        now = self._clock.now()
        await self._halt(now)
        self.faults = ()
        start = self._position
        duration = self._duration(start, target)
        if duration == 0:
            self._completed_at = now
            return await self._status()
        self._move = (start, target, now, duration)
        self._move_done = asyncio.Event()
        self._publish(
            DeviceEvent(self.name, "motion_started", now, _pos(target) | {"duration_s": duration})
        )
        if self._stall_next:
            self._stall_next = False
            self._motion_task = asyncio.create_task(self._run_stall(now + duration / 2))
        else:
            self._motion_task = asyncio.create_task(self._run_motion(now + duration, target))
        await self._move_done.wait()
        status = await self._status()
        if "stall" in status.faults:
            raise DeviceFault(self.name, "move_to", "stall", "drive stalled; table stopped")
        if status.position != target:
            raise DeviceStateError(self.name, "move_to", "motion stopped before the target")
        return status

    def stall(self) -> None:
        """Fault injection: a move in progress stalls now; otherwise the next move stalls."""
        if self._move is None:
            self._stall_next = True
            return
        self._stall_now()

    def _stall_now(self) -> None:
        now = self._clock.now()
        self._position = self.position_at(now)
        self._move = None
        self._completed_at = now
        self.faults = ("stall",)
        self._publish(DeviceEvent(self.name, "stalled", now, _pos(self._position)))
        self._move_done.set()
        if self._motion_task is not None and self._motion_task is not asyncio.current_task():
            self._motion_task.cancel()

    async def _run_stall(self, at: float) -> None:
        await self._clock.sleep_until(at)
        self._stall_now()

    async def _run_motion(self, end: float, target: TablePosition) -> None:
        await self._clock.sleep_until(end)
        self._position = target
        self._move = None
        self._completed_at = self._clock.now()
        self._publish(DeviceEvent(self.name, "motion_complete", self._completed_at, _pos(target)))
        self._move_done.set()

    async def _halt(self, now: float) -> None:
        if self._move is None:
            return
        self._position = self.position_at(now)
        self._move = None
        if self._motion_task is not None:
            self._motion_task.cancel()
        self._completed_at = now
        self._publish(DeviceEvent(self.name, "motion_stopped", now, _pos(self._position)))
        self._move_done.set()

    async def _stop(self) -> None:
        await self._halt(self._clock.now())

    async def _status(self) -> TableStatus:
        now = self._clock.now()
        return TableStatus(
            position=self.position_at(now),
            moving=self.moving,
            motion_completed_at_s=self._completed_at,
            faults=self.faults,
        )

    def place(self, position: TablePosition) -> None:
        """Test/resume hook: put the table somewhere without a move."""
        self._position = replace(position)


def _pos(p: TablePosition) -> dict[str, float]:
    return {
        "longitudinal_mm": p.longitudinal_mm,
        "lateral_mm": p.lateral_mm,
        "height_mm": p.height_mm,
        "tilt_deg": p.tilt_deg,
    }
