"""Every shipped protocol plays out on every shipped patient scenario.

A whole exam through the engine costs ≈ 2 s; protocols × scenarios would cost minutes, so
this test replays each protocol's timeline on the simulated patient itself — the kinetics
(injection, compression band, void, voiding), the phantom and the imaging chain the
simulated C-arm uses — with tiny panels: every view of every step renders, every tomo step's
layers resolve for that patient, iodine is conserved.  Whole exams of the new protocols run
through the engine in tests/exam/test_scenario_exams.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drivers import Clock, VirtualTimeEventLoop
from hardware_sim.patient import SimPatient
from hardware_sim.physics import (
    ContrastKinetics,
    DetectorModel,
    ImagingChain,
    TechniqueParams,
    ViewGeometry,
)
from hardware_sim.physics.tomo import SweepSpec, tomosynthesis
from hardware_sim.scenario import Scenario, load_scenario
from scheduler.protocol import (
    CaptureStep,
    FluoroStep,
    InjectStep,
    PromptStep,
    Protocol,
    TomoStep,
    load_protocol,
)
from scheduler.room import InjectorLimits, OperatorConfig
from scheduler.tomo_layers import layer_heights
from scheduler.weight_dose import weigh

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = sorted((ROOT / "configs" / "protocols").glob("*.yaml"))
SCENARIOS = sorted((ROOT / "configs" / "patients").glob("*.yaml"))
PX = 48
DELAYS = OperatorConfig().delays_s
CAPTURE_S = 5.0  # moving and exposing an untimed capture


def _patient(s: Scenario) -> SimPatient:
    loop = VirtualTimeEventLoop()
    try:
        p = SimPatient(s, Clock(loop))
    finally:
        loop.close()
    # 2-s integration steps (the scheme is exact in the limit and stable for any step): the
    # timeline, not the third digit, is under test here
    p.kinetics = ContrastKinetics(replace(p.kinetics.params, max_substep_s=2.0))
    return p


def _geometry(
    protocol: Protocol, step: CaptureStep | FluoroStep | TomoStep, pos: str
) -> ViewGeometry:
    f = protocol.all_fields[step.view.field]
    angle = 0.0
    if isinstance(step, CaptureStep) and step.view.angulation is not None:
        a = step.view.angulation
        angle = a.angle_deg if a.direction == "caudad" else -a.angle_deg
    return ViewGeometry(
        patient_position=pos,
        tube_angle_deg=angle,
        centre_z_mm=f.centre_mm,
        field_width_mm=f.width_mm,
        field_height_mm=f.height_mm,
    )


def _replay(protocol: Protocol, p: SimPatient, chain: ImagingChain) -> int:
    """Play the protocol's steps on the patient; returns the number of images made."""
    k = p.kinetics
    t = 0.0  # kinetics time; the injection starts at t = 0 (earlier steps see no contrast)
    injected = False
    position = "supine"
    images = 0
    info = {"kidney_midplane_mm": p.kidney_midplane_mm()}
    for step in protocol.steps:
        if step.at is not None:
            t = max(t, step.at)
        k.advance_to(t)
        if isinstance(step, InjectStep):
            assert protocol.contrast is not None
            for phase in step.phases:
                rate = protocol.contrast.concentration_mg_ml * phase.flow_ml_s
                k.advance_to(t + phase.delay_s)
                t = k.time_s + phase.volume_ml / phase.flow_ml_s
                k.advance_to(t, rate)
            injected = True
        elif isinstance(step, PromptStep):
            t += DELAYS.get(step.action, 3.0)
            k.advance_to(t)
            if step.action == "reposition" and step.position is not None:
                position = step.position
            elif step.action in ("compression_on", "compression_off"):
                k.set_compression(step.action == "compression_on")
            elif step.action == "void":
                k.void()
            elif step.action == "voiding":
                k.start_voiding()
        else:
            if step.view.position is not None and step.view.position != position:
                position = step.view.position
                t += DELAYS["reposition"]
                k.advance_to(t)
            g = _geometry(protocol, step, position)
            spec = step.technique if isinstance(step, CaptureStep | TomoStep) else None
            tech = TechniqueParams(kvp=(spec or protocol.technique).kv, mas=4.0)
            conc = k.concentrations_mg_ml() if injected else dict.fromkeys(k.COMPARTMENTS, 0.0)
            if isinstance(step, TomoStep):
                heights = layer_heights(step, info)
                assert all(10.0 <= h <= 300.0 for h in heights)
                if step.layer_offsets_mm is not None:
                    mid = info["kidney_midplane_mm"]
                    assert heights == tuple(round(mid + o, 1) for o in step.layer_offsets_mm)
                sweep = SweepSpec(step.sweep_deg, 1, float(np.mean(heights)))  # centre only
                res = tomosynthesis(chain, g, tech, sweep, heights, conc, k.volumes_ml(), t)
                layers = list(res.layers)
            else:
                layers = [chain.render(g, tech, conc, k.volumes_ml(), t).pixels]
            for img in layers:
                assert np.isfinite(img.astype(float)).all() and float(img.std()) > 0
            images += len(layers)
            t += CAPTURE_S
    held = sum(k.amounts_mg().values()) + k.eliminated_mg
    assert held == pytest.approx(k.total_iodine_in_mg, rel=1e-9, abs=1e-6)
    assert min(k.volumes_ml().values()) >= 0.0
    return images


@pytest.mark.parametrize("scenario_path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_protocol_plays_on_the_scenario(scenario_path: Path) -> None:
    s = load_scenario(scenario_path)
    pitch = 430.0 / PX
    det = DetectorModel(
        rows=PX,
        cols=PX,
        pixel_mm=pitch,
        electrons_per_count=DetectorModel.electrons_per_count * (pitch / 0.417) ** 2,
        seed=s.seed,
    )
    chain: ImagingChain | None = None
    for path in PROTOCOLS:
        protocol, _ = weigh(
            load_protocol(path), InjectorLimits(), s.build.weight_kg, weight_source="scenario"
        )
        p = _patient(s)
        chain = chain or ImagingChain(p.phantom, det, seed=s.seed, fast=False, view_cache_size=64)
        expected = sum(
            len(st.layer_heights_mm) if isinstance(st, TomoStep) else 1
            for st in protocol.steps
            if isinstance(st, CaptureStep | FluoroStep | TomoStep)
        )
        assert _replay(protocol, p, chain) == expected, path.name
