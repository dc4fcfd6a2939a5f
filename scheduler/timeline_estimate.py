"""Preflight's quick timeline estimate: when each step can probably start, without a device.

This is *not* the plan. ``fluoroctl plan`` rehearses the exam with the real engine on the
simulator (:mod:`scheduler.plan`), which is exact for the simulated room but takes seconds
and opens a simulated room; preflight runs before every ``run`` and ``validate`` and must
be instant and unable to fail, so it keeps this conservative estimate for its warnings
("this film will probably be missed"): typical preparation times (a table and positioner
move, collimation, settling) and the room's scripted operator delays, and an entrance
air-kerma estimate per step from the technique.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dose_estimate import entrance_kerma_mgy
from .protocol import CaptureStep, FluoroStep, InjectStep, PromptStep, Protocol, TomoStep
from .room import Room

SWEEP_S_PER_PROJECTION = 0.1
PREPARE_S = 6.0  # table/positioner move, collimation, settle
#: preparing a view the C-arm and table already hold: technique, collimation, and the
#: wait to learn of the injection start when the film follows it (0.3 s on the simulator)
SAME_VIEW_S = 0.5


@dataclass(frozen=True)
class EstimatedStep:
    id: str
    label: str
    type: str
    start_s: float  # relative to exam start
    after_injection_s: float | None
    exposures: int
    entrance_mgy: float
    note: str


@dataclass(frozen=True)
class Estimate:
    steps: list[EstimatedStep]
    duration_s: float
    contrast_ml: float
    iodine_g: float
    exposures: int
    fluoro_s: float
    entrance_mgy: float


def estimate_timeline(protocol: Protocol, room: Room) -> Estimate:
    """When each step can start, from typical preparation times and the room's scripted
    operator delays; no device, no event loop, no file."""
    delays = room.operator.delays_s
    t = 0.0
    anchor: float | None = None
    position = "supine"
    view: tuple[float, float] | None = None  # (field centre, secondary angle) now held
    planned: list[EstimatedStep] = []
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
            fluoro_s += step.duration_s  # the run's duration, 21 CFR 1020.30(b)
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
            EstimatedStep(step.id, step.title, step.type, start, after, exposures, dose, note)
        )
        t = end
    inject = protocol.inject_step
    volume = inject.volume_ml if inject else 0.0
    conc = protocol.contrast.concentration_mg_ml if protocol.contrast else 0.0
    return Estimate(
        steps=planned,
        duration_s=t,
        contrast_ml=volume,
        iodine_g=volume * conc / 1000.0,
        exposures=sum(p.exposures for p in planned if p.type in ("capture", "tomo")),
        fluoro_s=fluoro_s,
        entrance_mgy=sum(p.entrance_mgy for p in planned),
    )
