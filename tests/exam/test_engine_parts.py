"""The engine's parts: handlers by kind, subscribers from outside, hooks off the control path."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest

from drivers import Clock, VirtualTimeEventLoop
from scheduler import protocol as protocol_model
from scheduler.compose import make_operator, open_devices, run_exam
from scheduler.exam import (
    ANONYMOUS,
    HANDLERS,
    EventBus,
    ExamProgress,
    ExamRunner,
    RoomInfo,
    crash_after_line_from_env,
    make_exam_info,
)
from scheduler.exam.events import Captured, StateChanged
from scheduler.exam.hooks import WallClockWhilePaused
from scheduler.journal import Journal
from scheduler.protocol import load_protocol
from scheduler.records import PatientInfo
from scheduler.room import load_room

from .conftest import ROOT, WALL_ANCHOR

ACCELERATED = ROOT / "configs/protocols/ivu-accelerated.yaml"
SIM_ROOM = ROOT / "configs/rooms/simulator.yaml"


def test_every_step_kind_of_the_protocol_model_has_a_handler():
    (union, *_meta) = typing.get_args(protocol_model.Step)
    kinds = {
        typing.get_args(cls.model_fields["type"].annotation)[0] for cls in typing.get_args(union)
    }
    assert kinds == set(HANDLERS)


def test_no_scheduler_module_is_over_400_lines():
    """The engine is small parts: engine.py is gone and no scheduler module passes 400 lines."""
    scheduler = ROOT / "scheduler"
    assert not (scheduler / "engine.py").exists()
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in scheduler.rglob("*.py")
    }
    assert len(sizes) > 40
    assert {p: n for p, n in sizes.items() if n > 400} == {}


def test_pause_has_no_test_switch():
    assert list(inspect.signature(ExamRunner.pause).parameters) == ["self", "reason"]


def test_the_journal_never_kills_the_process(tmp_path, monkeypatch):
    """The crash hook is a subscriber the composition installs, not part of the journal."""
    killed: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setenv("FLUOROCTL_CRASH_AFTER_EVENT", "1")

    async def main() -> None:
        bus = EventBus(Clock.for_running_loop(WALL_ANCHOR))
        journal = Journal(tmp_path / "events.jsonl")
        bus.subscribe(lambda r: journal.write(r.line, fsync=False), durable=True)
        bus.emit(StateChanged(from_state="idle", to_state="preparing", reason="start"))
        bus.emit(StateChanged(from_state="preparing", to_state="running", reason=""))
        journal.close()

    loop = VirtualTimeEventLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert killed == []
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 2


def test_the_crash_hook_kills_right_after_the_nth_line(monkeypatch):
    killed: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(sig))

    async def main() -> list[int | None]:
        bus = EventBus(Clock.for_running_loop(WALL_ANCHOR))
        assert crash_after_line_from_env(bus, {}) is None
        crash_after_line_from_env(bus, {"FLUOROCTL_CRASH_AFTER_EVENT": "2"})
        seqs = []
        for _ in range(3):
            event = StateChanged(from_state="a", to_state="b", reason="")
            seqs.append(bus.emit(event).seq)
            if killed:
                break
        return seqs

    loop = VirtualTimeEventLoop()
    try:
        seqs = loop.run_until_complete(main())
    finally:
        loop.close()
    assert seqs == [1, 2] and len(killed) == 1


def test_the_wall_clock_follows_a_pause_only_while_it_lasts():
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        clock = Clock.for_running_loop(WALL_ANCHOR)
        bus = EventBus(clock)
        wall = WallClockWhilePaused(clock)
        wall.install(bus)
        bus.emit(StateChanged(from_state="running", to_state="paused", reason="test"))
        t0 = loop.time()
        await asyncio.sleep(0.2)  # real time passes: the virtual clock follows it
        held = loop.time() - t0
        bus.emit(StateChanged(from_state="paused", to_state="running", reason="test"))
        t1 = loop.time()
        await asyncio.sleep(3600)  # virtual again: an hour in no time
        return held, loop.time() - t1

    loop = VirtualTimeEventLoop()
    try:
        held, after = loop.run_until_complete(main())
    finally:
        loop.close()
    assert held == pytest.approx(0.2, abs=0.15)
    assert after == pytest.approx(3600)


def test_the_patient_comes_from_the_order():
    order = PatientInfo("MRN-7", "Doe^Jane", "F", dt.date(1970, 1, 2))
    exam = make_exam_info(load_protocol(ACCELERATED), load_room(SIM_ROOM), order, WALL_ANCHOR)
    assert exam.patient is order
    again = make_exam_info(load_protocol(ACCELERATED), load_room(SIM_ROOM), order, WALL_ANCHOR)
    assert again.study_instance_uid == exam.study_instance_uid  # derived, deterministic


def test_room_info_reads_what_a_backend_offers():
    class Saver:
        def persist_to(self, directory: Path) -> None: ...

        def recover_acquisitions(self, since_s: float) -> list[tuple[str, Any]]:
            return []

    info = RoomInfo.parse(
        {
            "patient_id": "P1",
            "patient_name": "Roe^Rick",
            "patient_birth_date": "1980-05-06",
            "patient_weight_kg": 70,
            "scenario": "/x/normal.yaml",
            "links": {"carm": "serial:///dev/pts/3"},
            "persistence": Saver(),
        }
    )
    assert info.patient == PatientInfo("P1", "Roe^Rick", "O", dt.date(1980, 5, 6), 70.0, None)
    assert info.scenario == "/x/normal.yaml" and info.links == {"carm": "serial:///dev/pts/3"}
    assert isinstance(info.persistence, Saver)
    bare = RoomInfo.parse({"persistence": object()})  # not a persistence: ignored
    assert bare == RoomInfo() and (bare.patient or ANONYMOUS).patient_id == "ANON"


def test_outputs_subscribe_from_outside_and_see_exactly_the_journal(tmp_path):
    """A console or telemetry attaches to the runner's bus; the runner does not change."""
    out = tmp_path / "exam"
    out.mkdir()
    progress = ExamProgress("accelerated")
    streamed: list[dict[str, Any]] = []
    images: list[str] = []

    async def main() -> None:
        protocol, room = load_protocol(ACCELERATED), load_room(SIM_ROOM)
        clock = Clock.for_running_loop(WALL_ANCHOR)
        devices = await open_devices(room, clock, ROOT, {})
        try:
            exam = make_exam_info(
                protocol, room, RoomInfo.of(devices).patient or ANONYMOUS, clock.wall_now()
            )
            runner = ExamRunner(
                protocol, room, devices, clock, make_operator(room, clock), out, exam, progress
            )
            stream = runner.bus.stream()

            async def console() -> None:
                async for r in stream:
                    await asyncio.sleep(0)  # a consumer that takes its time
                    if r.seq is not None:
                        streamed.append(json.loads(r.line.model_dump_json()))
                    if isinstance(r.event, Captured):
                        images.append(r.event.file)

            reader = asyncio.create_task(console())
            await runner.run()
            await reader
        finally:
            await devices.aclose()

    loop = VirtualTimeEventLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    journal = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert streamed == journal
    assert images == sorted(p.name for p in out.glob("[0-9][0-9][0-9]-*.dcm"))
    # the display's state is a fold of the same events
    assert progress.state == "completed" and progress.images == 5
    assert progress.steps_done == progress.steps_total == len(load_protocol(ACCELERATED).steps)
    assert progress.contrast_ml == pytest.approx(40.0, abs=0.05)
    confirmed = next(e for e in journal if e["kind"] == "injection_confirmed")
    assert progress.injection_start_s == confirmed["data"]["started_at_s"]


def test_a_broken_display_never_stops_the_exam(tmp_path):
    def broken(event: Any) -> None:
        raise RuntimeError("display bug")

    loop = VirtualTimeEventLoop()
    try:
        outcome = loop.run_until_complete(
            run_exam(
                ACCELERATED, SIM_ROOM, tmp_path / "exam", wall_anchor=WALL_ANCHOR, on_event=broken
            )
        )
    finally:
        loop.close()
    assert outcome.result.state == "completed"
