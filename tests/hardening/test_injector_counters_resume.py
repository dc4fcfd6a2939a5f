"""Hazard (issue 12, follow-up): the in-process simulator's saved state forgot the
injector's since-reset counters. After a kill -9 and ``fluoroctl resume`` the restored
injector counted from zero: earlier arms' contrast vanished from ``delivered_total_ml``,
a local start after the injection found "no program loaded", and a crash between the
start's acknowledgement and the first flow made the resumed exam see two injections where
the scheduler had commanded one — a false uncommanded-injection alarm that aborted it.

``hardware_sim/persist.py`` saves and restores the counters (earlier arms' volume and
starts, whether this arm was started, the last program loaded).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from drivers import Clock, InjectionPhase, InjectionProgram, InjectorState
from drivers.backends import RoomRequest
from hardware_sim.persist import snapshot_room
from hardware_sim.room import SimRoom

from .exam_folders import cli, crash_exam, events, line_at

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
FIRST = InjectionProgram((InjectionPhase(4.0, 30.0),), pressure_limit_kpa=2069.0)
SECOND = InjectionProgram((InjectionPhase(2.0, 20.0),), pressure_limit_kpa=2069.0)


def sim_room(**options: object) -> SimRoom:
    patient = {"patient": str(ROOT / "configs/patients/normal.yaml")}
    return SimRoom(RoomRequest(LINKS, Clock.for_running_loop(), patient | options, ROOT))


async def two_arms(room: SimRoom) -> None:
    """30 mL given and disarmed, then a second program started and given in part."""
    await room.injector.arm(FIRST)
    await room.injector.start()
    await room.injector.wait_finished(timeout_s=60.0)
    await room.injector.disarm()
    await room.injector.arm(SECOND)
    await room.injector.start()
    await asyncio.sleep(3.0)


def test_a_restored_room_keeps_counting_the_earlier_arms(run_virtual, tmp_path):
    async def go() -> None:
        room = sim_room()
        room.persistence.persist_to(tmp_path)
        await two_arms(room)
        before = await room.injector.status()
        assert before.injections_started == 2
        assert before.delivered_total_ml == pytest.approx(30.0 + before.delivered_ml)
        room.persistence.save()

        again = sim_room(restore_from=str(tmp_path))
        restored = await again.injector.status()
        assert restored.state is InjectorState.INJECTING
        assert restored.delivered_ml == pytest.approx(before.delivered_ml)
        assert restored.delivered_total_ml == pytest.approx(before.delivered_total_ml)
        assert restored.injections_started == 2
        done = await again.injector.wait_finished(timeout_s=60.0)
        assert done.delivered_total_ml == pytest.approx(50.0)
        assert done.injections_started == 2

    run_virtual(go)


def test_a_restored_injector_knows_its_last_program(run_virtual, tmp_path):
    async def go() -> None:
        room = sim_room()
        room.persistence.persist_to(tmp_path)
        await two_arms(room)
        await room.injector.wait_finished(timeout_s=60.0)
        room.persistence.save()

        again = sim_room(restore_from=str(tmp_path))
        # someone presses start at the injector after the restart: the last program runs
        # again (fault injection `injector.local_start`), counted on top of the earlier arms
        said = again.injector.local_start()
        assert said == f"{SECOND.volume_ml:g} mL started at the injector"
        done = await again.injector.wait_finished(timeout_s=60.0)
        assert done.delivered_total_ml == pytest.approx(70.0)
        assert done.injections_started == 3

    run_virtual(go)


def test_a_started_arm_is_still_counted_after_a_restore_before_the_first_flow(
    run_virtual, tmp_path
):
    async def go() -> None:
        room = sim_room()
        room.persistence.persist_to(tmp_path)
        await room.injector.arm(FIRST)
        status = await room.injector.start()  # acknowledged; flow follows the motor's take-up
        assert status.started_at_s is None and status.injections_started == 1
        room.persistence.save()
        state = json.loads((tmp_path / "room-state.json").read_text())
        assert state == json.loads(json.dumps(snapshot_room(room)))

        again = sim_room(restore_from=str(tmp_path))
        assert (await again.injector.status()).injections_started == 1
        await again.injector.wait_finished(timeout_s=60.0)
        assert (await again.injector.status()).injections_started == 1

    run_virtual(go)


def test_an_older_saved_state_without_counters_still_restores(run_virtual, tmp_path):
    async def go() -> None:
        room = sim_room()
        room.persistence.persist_to(tmp_path)
        await room.injector.arm(FIRST)
        await room.injector.start()
        await asyncio.sleep(2.0)
        room.persistence.save()
        path = tmp_path / "room-state.json"
        state = json.loads(path.read_text())
        for key in ("total_before_ml", "starts_before", "arm_started", "last_program"):
            state["injector"].pop(key, None)
        path.write_text(json.dumps(state))

        again = sim_room(restore_from=str(tmp_path))
        status = await again.injector.status()
        assert status.injections_started == 1 and status.state is InjectorState.INJECTING

    run_virtual(go)


def test_resume_after_a_kill_between_the_start_and_the_first_flow_raises_no_false_alarm(
    tmp_path,
):
    out = tmp_path / "exam"
    n = 17
    crash_exam(out, n)
    # the accelerated IVU is deterministic on virtual time: line 17 is the start's
    # acknowledgement, before the injector reports contrast flowing
    assert line_at(out, n)["kind"] == "start_acknowledged"
    assert not any(e["kind"] == "injection_started" for e in events(out))

    proc = cli("resume", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    journal = events(out)
    assert not [e for e in journal if e["kind"] == "uncommanded_injection"]
    assert not [e for e in journal if e["kind"] == "fault"]
    finished = [e for e in journal if e["kind"] == "completed" and e["source"] == "injector"]
    assert finished, [e["kind"] for e in journal][-40:]
    assert finished[-1]["data"]["injections_started"] == 1
    assert finished[-1]["data"]["delivered_total_ml"] == pytest.approx(40.0, abs=0.05)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed", summary.get("reason")
    assert summary["totals"]["contrast_delivered_ml"] == pytest.approx(40.0, abs=0.05)
    assert summary["totals"]["contrast_uncommanded_ml"] == 0.0
