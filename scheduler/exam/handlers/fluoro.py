"""Fluoroscopy steps: a pulsed run stored as one multi-frame image."""

from __future__ import annotations

from typing import Any

from drivers import DeviceFault, FluoroRequest, FluoroRun, Technique

from ...commands import fluoro_technique_for
from ...protocol import FluoroStep
from ..context import ExamContext
from ..events import FluoroDone
from ..faults import note_fault
from ..images import Acquired
from ..results import StepResult
from .acquisition import run_acquisition


class FluoroRunKind:
    command = "fluoro"

    def technique(self, ctx: ExamContext, step: FluoroStep) -> Technique:
        return fluoro_technique_for(step.technique)

    def check_dose(self, ctx: ExamContext, step: FluoroStep) -> None:
        t = step.technique
        ctx.dose.check_fluoro(step.duration_s, t.kv, t.ma, t.pulse_ms, step.pulse_rate_hz)

    def request(self, step: FluoroStep) -> FluoroRequest:
        return FluoroRequest(
            step.pulse_rate_hz, step.duration_s, fluoro_technique_for(step.technique)
        )

    async def acquire(self, ctx: ExamContext, step: FluoroStep) -> list[Acquired]:
        carm = ctx.devices.carm
        run = await carm.fluoro(self.request(step))
        if not run.frames:
            raise DeviceFault(carm.name, "fluoro", "no_frames", "run ended without a frame")
        return self.from_detector("fluoro", run, step)

    def from_detector(self, kind: str, payload: Any, step: FluoroStep) -> list[Acquired]:
        run: FluoroRun = payload
        return [(run.frames, run.pulse_rate_hz, None)]

    def after(
        self, ctx: ExamContext, step: FluoroStep, result: StepResult, acquired: list[Acquired]
    ) -> None:
        got = sum(len(frames) for frames, _, _ in acquired)
        expected = self.request(step).n_pulses
        ctx.emit(FluoroDone(step=step.id, frames=got, expected=expected))
        if got < expected:
            note_fault(ctx, "carm", "dropped_frames", f"kept the {got} of {expected} frames")
            result.detail = f"{expected - got} of {expected} frames dropped by the detector"


KIND = FluoroRunKind()


async def handle(ctx: ExamContext, step: object, result: StepResult) -> None:
    assert isinstance(step, FluoroStep)
    await run_acquisition(KIND, ctx, step, result)
