"""The new protocols as whole exams on the in-process simulator (virtual time).

* ivu-voiding on a man with outlet obstruction: the voiding film is exposed while the
  stream runs (the patient's ``voiding`` event gives the volume; the stream lasts
  π·V/(2·Qmax)), and the post-void film follows the end of voiding;
* ivu-nephrotomography-midplane on the 12-kg child: the layers are cut at the child's own
  kidney mid-plane ± 1 cm (the tomo records' heights), not at an adult's 8–10 cm.

The C-arm's panel is replaced by a 64² one (same 43 cm, gain scaled) to keep them quick.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import hardware_sim.carm as carm
from fluoroctl.testing import ExamRun, RunProtocol
from hardware_sim.patient import SimPatient
from hardware_sim.physics import DetectorModel
from hardware_sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
PX = 64


def _small_panel(
    rows: int = PX, cols: int = PX, pixel_mm: float = 0.0, seed: int = 0
) -> DetectorModel:
    pitch = 430.0 / PX
    gain = DetectorModel.electrons_per_count * (pitch / DetectorModel.pixel_mm) ** 2
    return DetectorModel(rows=PX, cols=PX, pixel_mm=pitch, electrons_per_count=gain, seed=seed)


@pytest.fixture
def small_panel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carm, "DetectorModel", _small_panel)


def _run(run_protocol: RunProtocol, protocol: str, patient: str) -> ExamRun:
    run = run_protocol(
        ROOT / "configs" / "protocols" / f"{protocol}.yaml",
        patient=ROOT / "configs" / "patients" / f"{patient}.yaml",
    )
    assert run.outcome.state.value == "completed", run.outcome.reason
    return run


@pytest.mark.usefixtures("small_panel")
def test_voiding_film_is_taken_while_the_stream_runs(run_protocol: RunProtocol) -> None:
    run = _run(run_protocol, "ivu-voiding", "outlet-obstruction")
    scenario = load_scenario(ROOT / "configs" / "patients" / "outlet-obstruction.yaml")
    started = next(e for e in run.events if e.source == "patient" and e.kind == "voiding")
    exposed = next(e for e in run.events if e.kind == "exposure" and e.step == "voiding-film")
    stream_s = math.pi * started.data["to_void_ml"] / (2.0 * scenario.voiding.max_flow_ml_s)
    assert started.data["to_void_ml"] > 10.0
    assert 0.0 < exposed.data["acquired_at_s"] - started.t_s < stream_s
    steps = {s.id: s for s in run.outcome.steps}
    assert [p.name for p in steps["voiding-film"].images] == ["007-voiding-film.dcm"]
    assert steps["post-void"].actual_s is not None
    assert steps["post-void"].actual_s > started.t_s + stream_s


@pytest.mark.usefixtures("small_panel")
def test_midplane_tomography_cuts_through_the_childs_kidneys(run_protocol: RunProtocol) -> None:
    run = _run(run_protocol, "ivu-nephrotomography-midplane", "paediatric")
    from drivers import Clock, VirtualTimeEventLoop

    loop = VirtualTimeEventLoop()
    try:
        child = SimPatient(load_scenario(ROOT / "configs/patients/paediatric.yaml"), Clock(loop))
    finally:
        loop.close()
    mid = child.kidney_midplane_mm()
    assert mid < 60.0  # a child's kidneys lie far below the adult protocol's 80–100 mm
    heights = [
        e.data["layer_height_mm"]
        for e in run.events
        if e.kind == "capture" and e.step == "nephrotomo" and "layer_height_mm" in e.data
    ]
    assert heights == pytest.approx([mid - 10.0, mid, mid + 10.0], abs=0.11)
