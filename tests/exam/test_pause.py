"""Pause and resume on virtual time through the ExamRunner API, and by signal on `fluoroctl run`.

The accelerated IVU (films at 1, 4 and 7 min after the injector-reported start) on the
in-process simulator. Pauses and resumes are scheduled on the loop at times relative to the
injection start, so every assertion is exact in loop time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers import Clock, VirtualTimeEventLoop
from scheduler.compose import make_operator, open_devices
from scheduler.exam import ANONYMOUS, ExamResult, ExamRunner, RoomInfo, make_exam_info
from scheduler.journal import ExamEvent
from scheduler.protocol import Protocol, load_protocol
from scheduler.room import load_room
from scheduler.state import ExamStatus, IllegalTransition, RunState

from .conftest import ROOT, WALL_ANCHOR

PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"
ROOM = ROOT / "configs/rooms/simulator.yaml"
TIMED = {"film-1min": 60.0, "film-4min": 240.0, "film-7min": 420.0}

#: (seconds after the injector-reported start, action) — action gets the runner
Plan = list[tuple[float, Callable[[ExamRunner], None]]]


@dataclass
class Run:
    result: ExamResult
    runner: ExamRunner
    events: list[dict[str, Any]]
    anchor: float
    snapshots: list[ExamStatus]

    def step(self, step_id: str) -> Any:
        return next(s for s in self.result.steps if s.id == step_id)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def commands(self, command: str) -> list[dict[str, Any]]:
        return [e for e in self.kinds("command") if e["data"].get("command") == command]


def protocol_with(**step_fields: dict[str, Any]) -> Protocol:
    data = load_protocol(PROTOCOL).model_dump(mode="json", exclude_unset=True)
    top = step_fields.pop("protocol", {})
    data.update(top)
    for step in data["steps"]:
        step.update(step_fields.get(step["id"], {}))
    return Protocol.model_validate(data)


def pause(runner: ExamRunner) -> None:
    runner.pause("test")


def resume(runner: ExamRunner) -> None:
    runner.resume("test")


def pause_for_30s(runner: ExamRunner) -> None:
    pause(runner)
    asyncio.get_running_loop().call_at(runner.clock.now() + 30.0, resume, runner)


def run(
    tmp_path: Path,
    plan: Plan,
    protocol: Protocol | None = None,
    at_start: Callable[[ExamRunner], None] | None = None,
) -> Run:
    protocol = protocol or load_protocol(PROTOCOL)
    room = load_room(ROOM)
    out = tmp_path / "exam"
    out.mkdir()
    loop = VirtualTimeEventLoop()
    holder: dict[str, Any] = {"snapshots": []}

    def on_event(event: ExamEvent) -> None:
        if event.kind == "injection_confirmed":
            anchor = float(event.data["started_at_s"])
            holder["anchor"] = anchor
            for offset, action in plan:
                loop.call_at(anchor + offset, action, holder["runner"])
        if event.kind == "state" and event.data["to_state"] == "paused":
            loop.call_soon(lambda: holder["snapshots"].append(holder["runner"].status()))

    async def go() -> ExamResult:
        clock = Clock.for_running_loop(WALL_ANCHOR)
        devices = await open_devices(room, clock, ROOT, {})
        try:
            patient = RoomInfo.of(devices).patient or ANONYMOUS
            exam = make_exam_info(protocol, room, patient, clock.wall_now())
            runner = ExamRunner(
                protocol,
                room,
                devices,
                clock,
                make_operator(room, clock),
                out,
                exam,
                on_event=on_event,
            )
            holder["runner"] = runner
            if at_start is not None:
                loop.call_soon(at_start, runner)
            return await runner.run()
        finally:
            await devices.aclose()

    try:
        result = loop.run_until_complete(go())
    finally:
        loop.close()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return Run(result, holder["runner"], events, holder["anchor"], holder["snapshots"])


def check_anchored(r: Run, steps: list[str]) -> None:
    """These films kept their original time points and were taken on them."""
    for sid in steps:
        s = r.step(sid)
        assert s.planned_s == pytest.approx(r.anchor + TIMED[sid], abs=1e-9), sid
        assert s.status == "done", (sid, s.status, s.detail)
        assert 0 <= s.commanded_s - s.planned_s <= 1e-6, (sid, s.commanded_s - s.planned_s)


def test_a_film_due_in_a_pause_is_taken_late_inside_its_late_window(tmp_path):
    r = run(
        tmp_path,
        [(50.0, pause), (75.0, resume)],
        protocol_with(**{"film-1min": {"late_window_s": 30}}),
    )
    assert r.result.state == "completed"
    film = r.step("film-1min")
    assert film.planned_s == pytest.approx(r.anchor + 60.0)
    assert film.commanded_s - film.planned_s == pytest.approx(15.0, abs=1e-6)
    assert film.status == "done" and "paused" in film.detail and "15.0 s late" in film.detail
    assert len(film.files) == 1
    check_anchored(r, ["film-4min", "film-7min"])
    moves = [(e["data"]["from_state"], e["data"]["to_state"]) for e in r.kinds("state")]
    assert ("running", "paused") in moves and ("paused", "running") in moves
    # The snapshot taken while paused says so and names the film that is held.
    (snap,) = r.snapshots
    assert snap.state is RunState.PAUSED and snap.injection_start_s == r.anchor
    assert snap.current_step == "film-1min"


def test_a_film_due_in_a_pause_beyond_its_late_window_is_missed_with_a_reason(tmp_path):
    r = run(
        tmp_path,
        [(50.0, pause), (75.0, resume)],
        protocol_with(**{"film-1min": {"late_window_s": 10}}),
    )
    assert r.result.state == "completed"
    film = r.step("film-1min")
    assert film.status == "missed" and not film.files
    assert "paused" in film.detail and "late window 10 s" in film.detail
    assert [e["step"] for e in r.kinds("capture_missed")] == ["film-1min"]
    assert not [e for e in r.commands("expose") if e["step"] == "film-1min"]
    check_anchored(r, ["film-4min", "film-7min"])


def test_when_paused_miss_misses_a_film_even_a_second_late(tmp_path):
    r = run(
        tmp_path,
        [(50.0, pause), (61.0, resume)],
        protocol_with(protocol={"when_paused": "miss"}),
    )
    film = r.step("film-1min")
    assert film.status == "missed" and "policy miss" in film.detail
    check_anchored(r, ["film-4min", "film-7min"])


def test_a_pause_that_ends_before_the_time_point_moves_nothing(tmp_path):
    r = run(tmp_path, [(20.0, pause), (50.0, resume), (100.0, pause), (230.0, resume)])
    assert r.result.state == "completed"
    check_anchored(r, list(TIMED))
    assert len(r.kinds("state")) == 2 + 4 + 1  # preparing, running; 2 pauses; completed


def test_fire_once_actions_are_never_replayed_on_resume(tmp_path):
    # Paused before the scout (so before the injection), during the injection, across the
    # 4-min film's time point and after the last timed film.
    r = run(
        tmp_path,
        [(10.0, pause), (20.0, resume), (235.0, pause), (240.5, resume)],
        protocol_with(**{"film-4min": {"late_window_s": 5}}),
        at_start=pause_for_30s,
    )
    assert r.result.state == "completed"
    assert len(r.commands("start_injection")) == 1
    assert len(r.kinds("injection_started")) == 1
    assert len(r.kinds("injection_confirmed")) == 1
    captures = r.kinds("capture")
    exposures = [e for e in r.events if e["kind"] == "exposure" and e["source"] != "scheduler"]
    assert len(r.commands("expose")) == len(exposures) == len(captures) == 5
    files = [c["data"]["file"] for c in captures]
    assert len(set(files)) == len(files)
    assert sorted(files) == sorted(
        p.name for p in (tmp_path / "exam").glob("[0-9][0-9][0-9]-*.dcm")
    )
    assert r.step("film-4min").commanded_s - r.step("film-4min").planned_s == pytest.approx(0.5)


def test_illegal_transitions_are_refused_with_a_reason_and_journaled(tmp_path):
    refusals: list[str | None] = []

    def resume_when_running(runner: ExamRunner) -> None:
        with pytest.raises(IllegalTransition, match="nothing to resume"):
            runner.resume("test")
        refusals.append(runner.control("resume", "test"))

    def pause_twice(runner: ExamRunner) -> None:
        runner.pause("test")
        refusals.append(runner.control("pause", "again"))

    r = run(tmp_path, [(30.0, resume_when_running), (100.0, pause_twice), (110.0, resume)])
    assert r.result.state == "completed"
    assert refusals == ["the exam is running, not paused: nothing to resume"] * 1 + [
        "the exam is already paused"
    ]
    refused = r.kinds("control_refused")
    assert [(e["data"]["action"], e["data"]["state"]) for e in refused] == [
        ("resume", "running"),
        ("resume", "running"),
        ("pause", "paused"),
    ]
    # After the end: refused, with the reason.
    with pytest.raises(IllegalTransition, match=r"already ended \(completed\)"):
        r.runner.pause("too late")
    assert r.runner.control("resume", "x") == "the exam already ended (completed)"


def test_a_pause_during_the_injection_holds_commands_not_the_contrast(tmp_path):
    # 40 mL over 30 s: paused 5 s in, resumed at T+45 (after the injection ended).
    r = run(tmp_path, [(5.0, pause), (45.0, resume)])
    assert r.result.state == "completed"
    (note,) = r.kinds("paused_during_injection")
    assert 0 < note["data"]["delivered_ml"] < 40
    finished = r.kinds("injection_finished")
    assert len(finished) == 1 and finished[0]["data"]["state"] == "completed"
    assert finished[0]["data"]["delivered_ml"] == pytest.approx(40.0, abs=0.05)
    # It ended while the exam was still paused: the injector ran on its program.
    paused_at, resumed_at = _pause_window(r)
    assert paused_at < finished[0]["t_s"] < resumed_at
    assert not r.commands("hold") and not r.kinds("held")
    check_anchored(r, list(TIMED))


def _pause_window(r: Run) -> tuple[float, float]:
    moves = [e for e in r.kinds("state") if e["data"]["to_state"] in ("paused", "running")]
    paused = next(e["t_s"] for e in moves if e["data"]["to_state"] == "paused")
    resumed = next(
        e["t_s"] for e in moves if e["data"]["to_state"] == "running" and e["t_s"] > paused
    )
    return paused, resumed


def test_a_pause_before_the_start_holds_the_injection(tmp_path):
    r = run(tmp_path, [], at_start=pause_for_30s)
    paused_at, resumed_at = _pause_window(r)
    (start,) = r.commands("start_injection")
    assert start["t_s"] >= resumed_at == pytest.approx(paused_at + 30.0)
    check_anchored(r, list(TIMED))


# -- the operator's control on a real `fluoroctl run` -------------------------------------------


def test_sigusr1_pauses_and_sigusr2_resumes_a_running_exam(tmp_path):
    out = tmp_path / "exam"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "run", str(PROTOCOL), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        journal = out / "events.jsonl"

        def wait_for(predicate: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if journal.exists():
                    lines = journal.read_text().splitlines()
                    events = [json.loads(x) for x in lines if x.endswith("}")]
                    if predicate(events):
                        return
                assert proc.poll() is None, f"exited before {what}: {proc.stderr.read()}"
                time.sleep(0.02)
            raise AssertionError(f"timed out waiting for {what}")

        def state_to(target: str) -> Callable[[list[dict[str, Any]]], bool]:
            return lambda ev: any(
                e["kind"] == "state" and e["data"]["to_state"] == target for e in ev
            )

        # After the first exposure (whose rendering, off the loop, stands virtual time still).
        wait_for(lambda ev: any(e["kind"] == "injection_confirmed" for e in ev), "injection")
        proc.send_signal(signal.SIGUSR1)
        wait_for(state_to("paused"), "the pause")
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)  # a second pause is refused, not fatal
        wait_for(lambda ev: any(e["kind"] == "control_refused" for e in ev), "the refusal")
        proc.send_signal(signal.SIGUSR2)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    moves = [
        (e["data"]["from_state"], e["data"]["to_state"], e["data"]["reason"])
        for e in events
        if e["kind"] == "state"
    ]
    assert ("running", "paused", "operator (SIGUSR1)") in moves
    assert ("paused", "running", "operator (SIGUSR2)") in moves
    assert moves[-1][1] == "completed"
    (refused,) = [e for e in events if e["kind"] == "control_refused"]
    assert refused["data"]["reason"] == "the exam is already paused"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed"
    paused_s = next(
        e["t_s"] for e in events if e["kind"] == "state" and e["data"]["to_state"] == "paused"
    )
    resumed_s = next(
        e["t_s"]
        for e in events
        if e["kind"] == "state" and e["data"]["to_state"] == "running" and e["t_s"] > paused_s
    )
    # While a person holds the exam virtual time follows the wall: it neither stands still nor
    # jumps to the held film's time point (T+60 s).
    assert 0.4 <= resumed_s - paused_s < 10.0
    for s in summary["steps"]:
        if s["planned_after_injection_s"] is not None:
            assert s["status"] == "done" and s["lateness_s"] < 1e-3, s
