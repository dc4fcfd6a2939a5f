"""Hazard (issue 12, follow-up): a room whose generator is configured below the protocol's
technique (its ``device_limits`` file) refused ``set_technique`` with ``device_limit``; the
refusal fell outside the acquisition's fault handling and aborted the whole exam mid-way,
after the contrast had been given, with no journal line saying which limit.

A refusal beyond the C-arm's own limits — of the technique while the view is prepared, or
of the irradiation itself — is no exposure: the step is ``missed`` with an
``interlock_refused`` line naming the limit (not retried: the device would refuse the same
request again) and the exam goes on, as for a generator fault before beam-on
(docs/faults.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluoroctl.testing import ExamRun, RunProtocol

from ..exam.conftest import WALL_ANCHOR

ROOT = Path(__file__).resolve().parents[2]
#: the kidneys film at 90 kV is beyond the room's 80 kV generator; the fluoroscopy at 75 kV
#: passes the radiographic limits but not the 72 kV fluoroscopy limit
PROTOCOL = """\
protocol:
  name: technique beyond the generator
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 70, mas: 32, ma: 500}
  steps:
    - {id: scout, type: capture, view: {position: supine, field: kub}}
    - id: inject
      type: inject
      phases: [{flow_ml_s: 2.0, volume_ml: 40}]
      pressure_limit_psi: 300
    - id: film-1min
      type: capture
      at: 1min
      view: {field: kidneys}
      technique: {kv: 90, mas: 32, ma: 500}
    - id: fluoro-90s
      type: fluoro
      at: 90s
      view: {field: kidneys}
      pulse_rate_hz: 2
      duration_s: 2
      technique: {kv: 75, ma: 2}
    - {id: film-3min, type: capture, at: 3min, view: {field: kub}}
"""
LIMITS = "device_limits:\n  carm: {max_kv: 80, fluoro_max_kv: 72}\n"


def room_with_tight_generator(tmp_path: Path) -> Path:
    (tmp_path / "limits.yaml").write_text(LIMITS)
    room = tmp_path / "room.yaml"
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    text = text.replace("patient: normal", f"patient: {ROOT}/configs/patients/normal.yaml")
    # relative: from the room file's folder, as docs/faults.md says
    room.write_text(text + "    device_limits: limits.yaml\n")
    return room


@pytest.fixture(scope="module")
def exam(shared_exam: RunProtocol, tmp_path_factory: pytest.TempPathFactory) -> ExamRun:
    """One exam for the module's tests (they only read it)."""
    folder = tmp_path_factory.mktemp("tight-generator")
    protocol = folder / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    room = room_with_tight_generator(folder)
    return shared_exam(protocol, room=room, wall_anchor=WALL_ANCHOR)


def test_a_technique_the_generator_refuses_is_a_missed_step_naming_the_limit(exam):
    assert exam.outcome.state == "completed", exam.outcome.reason
    film = exam.step("film-1min")
    assert film.status == "missed"
    assert "max_kv" in film.detail and "no exposure" in film.detail
    refusals = [e for e in exam.events_of("interlock_refused") if e.step == "film-1min"]
    assert len(refusals) == 1
    assert refusals[0].data["command"] == "set_technique"
    assert "max_kv" in refusals[0].data["reason"]
    assert "90 kV" in refusals[0].data["reason"]
    # nothing irradiated for the refused film, and it was asked once (never retried)
    steps = {e.step for e in exam.events_of("exposure")}
    assert "film-1min" not in steps
    assert not [e for e in exam.events_of("capture_retry") if e.step == "film-1min"]


def test_an_irradiation_the_generator_refuses_is_missed_the_same_way(exam):
    fluoro = exam.step("fluoro-90s")
    assert fluoro.status == "missed"
    assert "fluoro_max_kv" in fluoro.detail
    refusals = [e for e in exam.events_of("interlock_refused") if e.step == "fluoro-90s"]
    assert len(refusals) == 1 and refusals[0].data["command"] == "fluoro"
    assert "fluoro_max_kv" in refusals[0].data["reason"]
    assert not exam.events_of("fluoro_started")


def test_the_exam_goes_on_with_every_other_film_on_time(exam):
    assert exam.step("scout").status == "done"
    assert exam.step("film-3min").status == "done"
    assert exam.step("film-3min").planned_after_injection_s == 180.0
    on_disk = sorted(p.name for p in exam.out.glob("[0-9][0-9][0-9]-*.dcm"))
    listed = sorted(p.name for s in exam.outcome.steps for p in s.images)
    assert on_disk == listed and len(on_disk) == 2
    assert exam.summary["totals"]["missed"] == ["film-1min", "fluoro-90s"]
