"""`fluoroctl plan`: the real engine rehearses the exam on the simulator in virtual time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scheduler.dose_estimate import entrance_kerma_mgy, tube_output_ugy_per_mas
from scheduler.plan import Plan, rehearse
from scheduler.protocol import Protocol, load_protocol
from scheduler.room import Room, load_room

from .conftest import ROOT

SIM_ROOM = ROOT / "configs/rooms/simulator.yaml"
# a film due at the injection start, in a view the table must first move to: the engine
# prepares it only once the injector has confirmed the start, so it is late
LATE = """\
protocol:
  name: late film
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 72, mas: 32}
  steps:
    - {id: scout, type: capture}
    - id: inject
      type: inject
      phases: [{flow_ml_s: 2, volume_ml: 20}]
      pressure_limit_psi: 300
    - {id: film, type: capture, at: 0s, view: {field: kidneys}}
"""


@pytest.fixture(scope="module")
def room() -> Room:
    return load_room(SIM_ROOM)


def protocol(name: str) -> Protocol:
    return load_protocol(ROOT / f"configs/protocols/{name}.yaml")


def test_planned_times_are_the_runs_times(accelerated: Any, room: Room):
    """The same engine, room and patient on virtual time: the plan is the run."""
    plan = rehearse(protocol("ivu-accelerated"), room)
    ran = accelerated.summary
    assert plan.state == "completed"
    assert plan.duration_s == pytest.approx(ran["totals"]["exam_duration_s"], abs=1e-3)
    assert [s.id for s in plan.steps] == [s["id"] for s in ran["steps"]]
    for planned, step in zip(plan.steps, ran["steps"], strict=True):
        assert planned.status == step["status"]
        # the run's loop started at 0: its commanded times are times from the exam start
        assert planned.start_s == pytest.approx(step["commanded_s"], abs=1e-6), step["id"]
        assert planned.planned_after_injection_s == step["planned_after_injection_s"]
    assert plan.images == ran["totals"]["images"]
    assert plan.reference_air_kerma_mgy == pytest.approx(
        ran["totals"]["reference_air_kerma_mgy"], abs=1e-3
    )


def test_standard_plan_totals(standard: Any, room: Room):
    plan = rehearse(protocol("ivu-standard"), room)
    assert plan.exposures == 7
    assert plan.contrast_ml == 50
    assert plan.iodine_g == pytest.approx(15.0)
    assert plan.duration_s == pytest.approx(standard.summary["totals"]["exam_duration_s"])
    by_id = {s.id: s for s in plan.steps}
    assert by_id["nephrogram"].after_injection_s == pytest.approx(12.0, abs=1e-6)
    assert by_id["release-15min"].after_injection_s == pytest.approx(900.0, abs=1e-6)
    assert by_id["inject"].after_injection_s == 0.0
    assert by_id["scout"].after_injection_s is not None and by_id["scout"].after_injection_s < 0
    starts = [s.start_s for s in plan.steps]
    assert starts == sorted(starts)
    # every radiograph at 72 kV / 32 mAs gets the same entrance estimate
    assert plan.entrance_mgy == pytest.approx(7 * entrance_kerma_mgy(72, 32))


def test_a_film_the_engine_would_miss_is_planned_missed(tmp_path, room: Room):
    path = tmp_path / "late.yaml"
    path.write_text(LATE, encoding="utf-8")
    plan = rehearse(load_protocol(path), room)
    film = plan.steps[-1]
    assert film.status == "missed"
    assert film.detail.startswith("preparation ended")
    assert film.after_injection_s is not None and film.after_injection_s > 1.0  # tolerance
    assert plan.problems == [film]
    assert film.exposures == 0 and plan.exposures == 1  # the scout only


def test_a_room_on_real_links_is_rehearsed_on_simulated_devices(room: Room):
    """No endpoints file, no broker, no ports: the room's links are never opened."""
    wire = load_room(ROOT / "configs/rooms/sim-links.yaml")
    plan = rehearse(protocol("ivu-accelerated"), wire)
    assert plan.room == wire.name and plan.state == "completed"
    same = rehearse(protocol("ivu-accelerated"), room)
    assert [s.start_s for s in plan.steps] == [s.start_s for s in same.steps]


def test_a_plan_keeps_nothing(tmp_path, monkeypatch, room: Room):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(cwd)
    # a protocol not planned before in this process (plans are kept in memory, not on disk)
    accelerated = protocol("ivu-accelerated").model_copy(update={"name": "kept nowhere"})
    plan = rehearse(accelerated, room)
    assert plan.images == 5
    assert list(scratch.iterdir()) == []
    assert list(cwd.iterdir()) == []


def test_a_plan_can_be_made_inside_a_running_loop(room: Room):
    async def main() -> Plan:
        return rehearse(protocol("ivu-accelerated"), room)

    assert asyncio.run(main()).state == "completed"


def test_dose_estimate_is_in_published_range():
    # IVU ESAK per exam 6.6–15.3 mGy, abdomen ESD 0.44–10.31 mGy per radiograph [S126][S127]
    per_film = entrance_kerma_mgy(72, 32)
    assert 0.44 <= per_film <= 10.31
    assert tube_output_ugy_per_mas(75) == pytest.approx(73.3)


def plan_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "plan", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_plan_cli_prints_totals():
    proc = plan_cli("configs/protocols/ivu-obstruction.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "contrast 60 mL" in proc.stdout
    assert "9 radiographic exposures" in proc.stdout
    assert "Fluoro ureters" in proc.stdout


def test_plan_json_is_machine_readable(tmp_path: Path):
    proc = plan_cli("configs/protocols/ivu-standard.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["state"] == "completed"
    assert plan["exposures"] == 7 and plan["contrast_ml"] == 50
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["nephrogram"]["planned_after_injection_s"] == 12.0
    assert steps["nephrogram"]["after_injection_s"] == pytest.approx(12.0, abs=1e-6)
    assert steps["void"]["status"] == "done" and steps["void"]["type"] == "prompt"
    assert set(steps["scout"]) >= {"start_s", "exposures", "entrance_mgy", "status"}


def test_plan_warns_of_what_the_rehearsal_missed(tmp_path: Path):
    path = tmp_path / "late.yaml"
    path.write_text(LATE, encoding="utf-8")
    proc = plan_cli(str(path))
    assert proc.returncode == 0, proc.stderr
    rehearsed = [line for line in proc.stderr.splitlines() if "rehearsed on the simulator" in line]
    assert rehearsed == [
        f"warning: {path}:11: protocol.steps[2]: rehearsed on the simulator: missed: "
        + next(
            s for s in rehearse(load_protocol(path), load_room(SIM_ROOM)).steps if s.id == "film"
        ).detail
    ]


def test_plan_with_an_unknown_patient_is_one_line():
    proc = plan_cli("configs/protocols/ivu-standard.yaml", "--patient", "nobody")
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: --patient: unknown patient scenario 'nobody'")
