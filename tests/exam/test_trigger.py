"""Device-timed exposures in the exam engine (decision 0016), on virtual time.

A timed film's beam comes on at its time point (the C-arm's own timer); a C-arm without timed
triggers gets the command early by its declared exposure latency; a refused timed exposure
is sent untimed; the fire-once command line is in the journal before the command leaves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers import DeviceFault
from drivers.carm import TRIGGER_PAST
from fluoroctl.testing import ExamRun, RunProtocol, read_journal
from hardware_sim.carm import EXPOSURE_LATENCY_S, SimCArm
from scheduler.exam.timing import COMMAND_LEAD_S, MIN_ARM_S, Trigger, choose_trigger

from .conftest import ROOT, WALL_ANCHOR

SIM_ROOM = ROOT / "configs/rooms/simulator.yaml"
#: the least exam with timed films: a small injection and two films on one view
TWO_FILMS = """\
protocol:
  name: two timed films
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 70, mas: 32, ma: 500}
  steps:
    - {id: inject, type: inject, label: 10 mL, phases: [{flow_ml_s: 2.0, volume_ml: 10}],
       pressure_limit_psi: 300}
    - {id: film-a, type: capture, label: film a, at: 10s, view: {position: supine, field: kidneys}}
    - {id: film-b, type: capture, label: film b, at: 20s, view: {field: kidneys}}
"""


def two_films(tmp_path: Path) -> Path:
    path = tmp_path / "two-films.yaml"
    path.write_text(TWO_FILMS)
    return path


def timed_films(exam: ExamRun) -> list[dict[str, object]]:
    return [
        s
        for s in exam.summary["steps"]
        if s["type"] == "capture" and s["planned_s"] is not None and s["files"]
    ]


# -- choosing the trigger (pure) ---------------------------------------------------------------
def test_a_c_arm_with_a_timed_trigger_is_armed_for_the_time_point() -> None:
    t = choose_trigger(deadline_s=10.0, now_s=9.7, exposure_latency_s=0.02, timed_ok=True)
    assert t == Trigger("timed", 10.0) and t.send_at_s is None


def test_without_a_timed_trigger_the_command_is_due_a_latency_early() -> None:
    t = choose_trigger(deadline_s=10.0, now_s=9.7, exposure_latency_s=0.02, timed_ok=False)
    assert t == Trigger("early", pytest.approx(9.98)) and t.send_at_s == pytest.approx(9.98)


def test_too_close_to_arm_falls_back_to_the_latency_early_command() -> None:
    now = 10.0 - 0.02 - MIN_ARM_S / 2
    t = choose_trigger(deadline_s=10.0, now_s=now, exposure_latency_s=0.02, timed_ok=True)
    assert t.mode == "early"


def test_untimed_and_uncompensated_commands_go_at_once_or_at_the_time_point() -> None:
    assert choose_trigger(
        deadline_s=None, now_s=1.0, exposure_latency_s=0.02, timed_ok=True
    ) == Trigger("immediate")
    t = choose_trigger(deadline_s=10.0, now_s=9.7, exposure_latency_s=0.0, timed_ok=False)
    assert t == Trigger("immediate", 10.0)


# -- whole exams ---------------------------------------------------------------------------------
def test_timed_films_beam_on_at_their_time_points_and_the_record_says_how(
    accelerated: ExamRun,
) -> None:
    films = timed_films(accelerated)
    assert len(films) >= 3
    for s in films:
        assert s["trigger"] == "timed", s
        # the device's beam-on (virtual time: exact) is the time point, not a latency later
        assert s["actual_s"] == pytest.approx(s["planned_s"], abs=1e-6), s
        assert s["device_lateness_s"] == pytest.approx(0.0, abs=1e-6)
        assert s["commanded_s"] == s["command_due_s"] == s["planned_s"]
        # the command left ahead of the time point, inside the lead
        lead = s["planned_s"] - s["sent_s"]
        assert EXPOSURE_LATENCY_S < lead <= EXPOSURE_LATENCY_S + COMMAND_LEAD_S + 1e-6, s
    commands = [e.data for e in accelerated.events_of("command") if e.data["command"] == "expose"]
    armed = [c for c in commands if c["trigger"] == "timed"]
    assert [c["beam_at_s"] for c in armed] == [s["planned_s"] for s in films]
    captures = [e.data for e in accelerated.events_of("capture") if e.data.get("trigger")]
    assert {c["trigger"] for c in captures if c["planned_s"] is not None} == {"timed"}


def test_a_c_arm_without_timed_trigger_gets_the_command_its_latency_early(
    run_protocol: RunProtocol, tmp_path: Path
) -> None:
    room = tmp_path / "room.yaml"
    room.write_text(
        SIM_ROOM.read_text().replace("options:\n", "options:\n    carm_timed_trigger: false\n", 1)
    )
    assert "carm_timed_trigger" in room.read_text()
    exam = run_protocol(two_films(tmp_path), room=room, wall_anchor=WALL_ANCHOR)
    films = timed_films(exam)
    assert len(films) == 2
    for s in films:
        assert s["trigger"] == "early", s
        assert s["sent_s"] == pytest.approx(s["planned_s"] - EXPOSURE_LATENCY_S, abs=1e-6)
        assert s["lateness_s"] == pytest.approx(0.0, abs=1e-6)
        assert s["actual_s"] == pytest.approx(s["planned_s"], abs=1e-6)


def test_a_refused_timed_exposure_is_sent_untimed_and_its_command_was_journaled_first(
    run_protocol: RunProtocol, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SimCArm._expose_at
    seen: list[dict[str, object]] = []
    out = tmp_path / "exam"

    async def expose_at(self: SimCArm, at_s: float):  # type: ignore[no-untyped-def]
        # what the journal holds at the moment the command reaches the C-arm
        lines = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        last = [x for x in lines if x["kind"] == "command"][-1]
        seen.append(last)
        if len(seen) == 1:
            raise DeviceFault(self.name, "expose", TRIGGER_PAST, "not armed (test)")
        return await original(self, at_s)

    monkeypatch.setattr(SimCArm, "_expose_at", expose_at)
    exam = run_protocol(two_films(tmp_path), out=out, wall_anchor=WALL_ANCHOR)
    assert exam.outcome.state == "completed", exam.outcome.reason
    # every timed film reached the C-arm once; the refused one's second command was untimed
    assert len(seen) == len(timed_films(exam)) == 2
    for line in seen:
        assert line["data"]["command"] == "expose" and line["data"]["trigger"] == "timed"
        assert line["data"]["beam_at_s"] is not None
    first = seen[0]["step"]
    (retry,) = [e for e in exam.events_of("capture_retry") if e.step == first]
    assert retry.data["fault"] == TRIGGER_PAST
    step = next(s for s in exam.summary["steps"] if s["id"] == first)
    assert step["status"] == "done" and step["trigger"] == "early" and step["files"]
    kinds = [(e.kind, e.data.get("trigger")) for e in read_journal(out) if e.step == first]
    assert ("command", "timed") in kinds and ("command", "early") in kinds
