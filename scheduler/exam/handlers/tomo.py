"""Tomosynthesis steps: one sweep, one stored image per reconstructed layer."""

from __future__ import annotations

from typing import Any

from drivers import Dose, Technique, TomoRequest, TomoSeries

from ...commands import technique_for
from ...protocol import TomoStep
from ...records import TomoInfo
from ...tomo_layers import layer_heights
from ..context import ExamContext
from ..images import Acquired
from ..results import StepResult
from .acquisition import run_acquisition


class Sweep:
    command = "tomo"

    def technique(self, ctx: ExamContext, step: TomoStep) -> Technique:
        return technique_for(step.technique or ctx.protocol.technique)

    def check_dose(self, ctx: ExamContext, step: TomoStep) -> None:
        ctx.dose.check_exposure_dose("tomo")

    async def acquire(self, ctx: ExamContext, step: TomoStep) -> list[Acquired]:
        series = await ctx.devices.carm.tomosynthesis(
            TomoRequest(
                layer_heights(step, ctx.devices.info),
                self.technique(ctx, step),
                step.sweep_deg,
                step.projections,
            )
        )
        return self.from_detector("tomo", series, step)

    def from_detector(self, kind: str, payload: Any, step: TomoStep) -> list[Acquired]:
        series: TomoSeries = payload
        sweep_s = series.ended_at_s - series.started_at_s
        # the device books the sweep's dose on one layer; every layer's image states it
        dose = Dose(
            sum(f.dose.reference_air_kerma_mgy for f in series.layers),
            sum(f.dose.entrance_air_kerma_mgy for f in series.layers),
            sum(f.dose.dap_gy_cm2 for f in series.layers),
        )
        return [
            (
                (layer,),
                None,
                TomoInfo(height, series.sweep_deg, series.projections, sweep_s, dose),
            )
            for layer, height in zip(series.layers, series.heights_mm, strict=True)
        ]

    def after(
        self, ctx: ExamContext, step: TomoStep, result: StepResult, acquired: list[Acquired]
    ) -> None:
        pass


KIND = Sweep()


async def handle(ctx: ExamContext, step: object, result: StepResult) -> None:
    assert isinstance(step, TomoStep)
    await run_acquisition(KIND, ctx, step, result)
