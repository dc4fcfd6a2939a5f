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
        return [((await ctx.devices.carm.expose(),), None, None)]

    async def acquire_at(self, ctx: ExamContext, step: CaptureStep, at_s: float) -> list[Acquired]:
        """A timed exposure: the C-arm brings the beam on at ``at_s`` by its own timer."""
        return [((await ctx.devices.carm.expose(at_s=at_s),), None, None)]

    def from_detector(self, kind: str, payload: Any, step: CaptureStep) -> list[Acquired]:
        frame: Frame = payload
        return [((frame,), None, None)]

    def after(
        self, ctx: ExamContext, step: CaptureStep, result: StepResult, acquired: list[Acquired]
    ) -> None:
        pass


KIND = Radiograph()


async def handle(ctx: ExamContext, step: object, result: StepResult) -> None:
    assert isinstance(step, CaptureStep)
    await run_acquisition(KIND, ctx, step, result)
