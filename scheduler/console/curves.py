"""The simulated patient's contrast curves on the console (simulator rooms only).

A room whose ``effects`` can say the patient's iodine (:class:`drivers.backends.ContrastProbe`:
the in-process simulator, or ``sim serve`` over its effects link) is read every
:data:`SAMPLE_S` of exam time on the exam's loop. Each read is bounded and its failure costs a
point, never the exam: the curves are for the eye, not the record (nothing is journaled).
"""

from __future__ import annotations

import asyncio
import logging

from drivers import Clock
from drivers.backends import ContrastProbe

from ..exam.bus import EventBus, Recorded
from .hub import ConsoleHub

log = logging.getLogger(__name__)

#: exam seconds between two reads (a 20-minute exam: ~130 points per compartment)
SAMPLE_S = 10.0
#: a read that takes longer is given up (over links at 60× this is 33 ms of wall time)
READ_TIMEOUT_S = 2.0
#: what the page plots: blood, the nephrogram, the collecting systems and the bladder
SHOWN = ("plasma", "kidney_left", "kidney_right", "pelvis_left", "pelvis_right", "bladder")


class CurveSampler:
    """Reads ``probe`` on the exam's clock and hands the points to ``hub``."""

    def __init__(self, probe: ContrastProbe, clock: Clock, hub: ConsoleHub) -> None:
        self._probe, self._clock, self._hub = probe, clock, hub
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def start(self, bus: EventBus) -> None:
        """Begin on the running (exam) loop; ends with the exam's ``exam_finished``."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="console-curves")
        bus.subscribe(self._on_event)

    def _on_event(self, recorded: Recorded) -> None:
        if recorded.kind == "exam_finished":
            self.stop()

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        next_s = self._clock.now()
        while True:
            await self._read_once()
            next_s += SAMPLE_S
            await self._clock.sleep_until(next_s)

    async def _read_once(self) -> None:
        t = self._clock.now()
        try:
            values = await asyncio.wait_for(self._probe.contrast_mg_ml(), READ_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a display aid: a lost point, never a stopped exam
            self._failures += 1
            if self._failures == 1:
                log.warning("console: contrast curves not read (%s); points will be missing", exc)
            return
        points = {name: float(values[name]) for name in SHOWN if name in values}
        if points:
            self._hub.add_curve_point(t, points)
