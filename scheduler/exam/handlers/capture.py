"""Capture steps: one radiograph, a timed exposure when the C-arm takes one."""

from __future__ import annotations

from typing import Any

from drivers import Frame, Technique

from ...commands import technique_for
from ...protocol import CaptureStep
from ..context import ExamContext
from ..images import Acquired
from ..results import StepResult
from .acquisition import run_acquisition


class Radiograph:
    command = "expose"

    def technique(self, ctx: ExamContext, step: CaptureStep) -> Technique:
        return technique_for(step.technique or ctx.protocol.technique)

    def check_dose(self, ctx: ExamContext, step: CaptureStep) -> None:
        ctx.dose.check_exposure_dose("expose")

    async def acquire(self, ctx: ExamContext, step: CaptureStep) -> list[Acquired]:
        # the bound given, so no status round trip delays the command past its due time
        timeout = _bound_s(self.technique(ctx, step))
        return [((await ctx.devices.carm.expose(timeout_s=timeout),), None, None)]

    async def acquire_at(self, ctx: ExamContext, step: CaptureStep, at_s: float) -> list[Acquired]:
        """A timed exposure: the C-arm brings the beam on at ``at_s`` by its own timer."""
        timeout = _bound_s(self.technique(ctx, step)) + max(0.0, at_s - ctx.clock.now())
        return [((await ctx.devices.carm.expose(at_s=at_s, timeout_s=timeout),), None, None)]

    def from_detector(self, kind: str, payload: Any, step: CaptureStep) -> list[Acquired]:
        frame: Frame = payload
        return [((frame,), None, None)]

    def after(
        self, ctx: ExamContext, step: CaptureStep, result: StepResult, acquired: list[Acquired]
    ) -> None:
        pass


def _bound_s(technique: Technique) -> float:
    """The exposure's bound, as ``CArm.expose`` would take it from the C-arm's status."""
    return technique.exposure_ms / 1000.0 + 3.0


KIND = Radiograph()


async def handle(ctx: ExamContext, step: object, result: StepResult) -> None:
    assert isinstance(step, CaptureStep)
    await run_acquisition(KIND, ctx, step, result)
