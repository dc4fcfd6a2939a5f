"""Dry run: the timeline, duration, contrast and an estimated dose, without touching devices.

Untimed steps take their scripted operator delays and typical preparation times; the dose
estimate is entrance air kerma from tube output at 100 cm [S125] by inverse square to the
skin, so it is an order-of-magnitude planning figure, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .protocol import CaptureStep, FluoroStep, InjectStep, PromptStep, Protocol, TomoStep
from .room import Room

#: Tube output, air kerma µGy/mAs at 100 cm, 2.5 mm Al, W anode (SpekPy, research §5.2).
OUTPUT_KV = np.array([60.0, 70.0, 75.0, 80.0, 120.0])
OUTPUT_UGY_PER_MAS = np.array([48.9, 64.9, 73.3, 82.0, 158.7])

SWEEP_S_PER_PROJECTION = 0.1
PREPARE_S = 6.0  # table/positioner move, collimation, settle
#: preparing a view the C-arm and table already hold: technique, collimation, and the
#: wait to learn of the injection start when the film follows it (0.3 s on the simulator)
SAME_VIEW_S = 0.5
SID_MM = 1150.0
TABLE_TO_DETECTOR_MM = 60.0


def tube_output_ugy_per_mas(kv: float) -> float:
    return float(np.interp(kv, OUTPUT_KV, OUTPUT_UGY_PER_MAS))


def entrance_kerma_mgy(kv: float, mas: float, ap_thickness_mm: float = 220.0) -> float:
    skin_distance_mm = SID_MM - TABLE_TO_DETECTOR_MM - ap_thickness_mm
    return tube_output_ugy_per_mas(kv) * mas * (1000.0 / skin_distance_mm) ** 2 / 1000.0


@dataclass(frozen=True)
class PlannedStep:
    id: str
    label: str
    type: str
    start_s: float  # relative to exam start
    after_injection_s: float | None
    exposures: int
    entrance_mgy: float
    note: str


@dataclass(frozen=True)
class Plan:
    steps: list[PlannedStep]
    duration_s: float
    contrast_ml: float
    iodine_g: float
    exposures: int
    fluoro_s: float
    entrance_mgy: float


def make_plan(protocol: Protocol, room: Room) -> Plan:
    delays = room.operator.delays_s
    t = 0.0
    anchor: float | None = None
    position = "supine"
    view: tuple[float, float] | None = None  # (field centre, secondary angle) now held
    planned: list[PlannedStep] = []
    fluoro_s = 0.0
    for step in protocol.steps:
        note = ""
        exposures = 0
        dose = 0.0
        prep = 0.0
        if isinstance(step, CaptureStep | FluoroStep | TomoStep):
            target = (
                protocol.all_fields[step.view.field].centre_mm,
                step.view.angulation.secondary_angle_deg if step.view.angulation else 0.0,
            )
            moves = target != view
            if step.view.position and step.view.position != position:
                prep += delays.get("reposition", 40.0)
                note = f"reposition {step.view.position}"
                position = step.view.position
                moves = True
            prep += PREPARE_S if moves else SAME_VIEW_S
            view = target
        elif isinstance(step, PromptStep):
            prep = delays.get(step.action, 3.0)
        elif isinstance(step, InjectStep):
            prep = delays.get("confirm_injection", 5.0) if step.confirm else 0.0
        ready = t + (prep if not isinstance(step, PromptStep) else 0.0)
        start = (
            max(ready, anchor + step.at) if (step.at is not None and anchor is not None) else ready
        )
        if isinstance(step, CaptureStep):
            tech = step.technique or protocol.technique
            exposures, dose = 1, entrance_kerma_mgy(tech.kv, tech.mas)
            end = start + 0.5
        elif isinstance(step, TomoStep):
            tech = step.technique or protocol.technique
            exposures, dose = 1, entrance_kerma_mgy(tech.kv, tech.mas)  # one sweep
            note = f"{step.projections} projections, {len(step.layer_heights_mm)} layers"
            end = start + step.projections * SWEEP_S_PER_PROJECTION + 1.0
        elif isinstance(step, FluoroStep):
            n = round(step.pulse_rate_hz * step.duration_s)
            exposures = n
            dose = n * entrance_kerma_mgy(
                step.technique.kv, step.technique.ma * step.technique.pulse_ms / 1000
            )
            fluoro_s += n * step.technique.pulse_ms / 1000
            end = start + step.duration_s
        elif isinstance(step, InjectStep):
            anchor = start
            seconds = sum(p.volume_ml / p.flow_ml_s for p in step.phases)
            note = f"{step.volume_ml:g} mL over {seconds:.0f} s"
            end = start
        else:
            end = start + prep
            note = step.action
        after = None if anchor is None else start - anchor
        planned.append(
            PlannedStep(step.id, step.title, step.type, start, after, exposures, dose, note)
        )
        t = end
    inject = protocol.inject_step
    volume = inject.volume_ml if inject else 0.0
    conc = protocol.contrast.concentration_mg_ml if protocol.contrast else 0.0
    return Plan(
        steps=planned,
        duration_s=t,
        contrast_ml=volume,
        iodine_g=volume * conc / 1000.0,
        exposures=sum(p.exposures for p in planned if p.type in ("capture", "tomo")),
        fluoro_s=fluoro_s,
        entrance_mgy=sum(p.entrance_mgy for p in planned),
    )
