"""Hazard (issue 12): during a live exam an intruder's second injection went unnoticed; the
summary said 50 mL while the device delivered 150.

The injector counts what it delivered and the injections it started since it was reset, over
every arm (``delivered_total_ml``, ``injections_started`` in its status and events). The
scheduler compares that with what it commanded: an injection it did not command (someone
pressing start at the injector: fault ``injector.local_start``) is journaled as a ``safety``
line, shown to the operator, stopped, and ends the exam (fault policy
``injector.uncommanded_injection``, default abort); summary.json reports the device's volume.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers import Clock, InjectionPhase, InjectionProgram, InjectorState
from drivers.backends import RoomRequest
from fluoroctl.testing import ExamRun, RunProtocol
from hardware_sim.faults import parse_fault
from hardware_sim.injector import SimInjector
from hardware_sim.room import SimRoom
from scheduler.exam.contrast import ContrastLedger
from scheduler.exam.progress import ExamProgress
from tests.e2e.conftest import SimServe, cli, start_sim_serve, stop_sim_serve

from ..exam.conftest import WALL_ANCHOR

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
#: 40 mL at 2 mL/s (20 s); films at 10 s, 1 min, 3 min, then prone, void, post-void
MATRIX = ROOT / "tests/exam/fault-matrix.yaml"
ACCELERATED = ROOT / "configs/protocols/ivu-accelerated.yaml"
PROGRAM = InjectionProgram((InjectionPhase(2.0, 40.0),), pressure_limit_kpa=2069.0)
#: the injection first, confirmed by the (scripted) operator in 5 s: armed from ~0 s to ~5 s
INJECT_FIRST = """\
protocol:
  name: injection first
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 70, mas: 32, ma: 500}
  steps:
    - id: inject
      type: inject
      phases: [{flow_ml_s: 2.0, volume_ml: 40}]
      pressure_limit_psi: 300
    - {id: film-1min, type: capture, at: 1min, view: {position: supine, field: kidneys}}
"""


def sim_room() -> SimRoom:
    options = {"patient": str(ROOT / "configs/patients/normal.yaml")}
    return SimRoom(RoomRequest(LINKS, Clock.for_running_loop(), options, ROOT))


def run(run_protocol: RunProtocol, protocol: Path, *faults: str) -> ExamRun:
    return run_protocol(protocol, faults=list(faults), wall_anchor=WALL_ANCHOR)


def safety_lines(exam: ExamRun) -> list[Any]:
    return [e for e in exam.events_of("uncommanded_injection") if e.source == "safety"]


# -- the device ---------------------------------------------------------------------------------
def test_the_injector_counts_every_arm_since_reset_and_a_local_start_is_one_more(run_virtual):
    async def go() -> None:
        room = sim_room()
        injector = room.injector
        assert "nothing happens" in injector.local_start()  # nothing loaded: nothing to start
        await injector.arm(PROGRAM)
        await injector.start()
        first = await injector.wait_finished(timeout_s=60.0)
        assert (first.delivered_ml, first.delivered_total_ml) == pytest.approx((40.0, 40.0))
        assert first.injections_started == 1
        assert "started at the injector" in injector.local_start()
        status = await injector.wait_finished(timeout_s=60.0)
        assert status.state is InjectorState.COMPLETED
        # this arm's volume, and everything since the reset: the second injection counts
        assert status.delivered_ml == pytest.approx(40.0)
        assert status.delivered_total_ml == pytest.approx(80.0)
        assert status.injections_started == 2
        await injector.disarm()  # a new program for a new patient: the counters go on
        after = await injector.status()
        assert after.delivered_ml == 0.0 and after.delivered_total_ml == pytest.approx(80.0)

    run_virtual(go)


def test_a_local_start_of_an_armed_program_starts_it_and_says_so(run_virtual):
    async def go() -> None:
        injector = sim_room().injector
        kinds: list[str] = []
        injector.subscribe(lambda e: kinds.append(e.kind))
        await injector.arm(PROGRAM)
        injector.local_start()
        started = await injector.wait_started(timeout_s=1.0)
        assert started.state is InjectorState.INJECTING and started.injections_started == 1
        assert "local_start" in kinds and "injection_started" in kinds
        await injector.stop()
        await asyncio.sleep(0.1)

    run_virtual(go)


def test_local_start_is_a_fault_kind():
    spec = parse_fault("injector.local_start@T+35s")
    assert (spec.kind, spec.at_s, spec.relative_to) == ("injector.local_start", 35.0, "injection")


# -- the ledger ---------------------------------------------------------------------------------
def test_the_ledger_takes_the_devices_counters_from_before_the_exam_as_its_baseline():
    ledger = ContrastLedger()
    earlier = dict(delivered_total_ml=90.0, injections_started=2)  # a previous patient's
    ledger.baseline(_status(0.0, **earlier))
    assert ledger.observe_event("status", {"delivered_ml": 0.0, **earlier}) is None
    ledger.command(40.0)
    assert ledger.observe_event("injection_started", {"injections_started": 3}) is None
    assert ledger.observe_event("completed", {"delivered_total_ml": 130.0}) is None
    assert ledger.device_ml == pytest.approx(40.0) and ledger.uncommanded_ml == 0.0
    evidence = ledger.observe_event("injection_started", {"injections_started": 4})
    assert evidence is not None and "2 injection(s)" in evidence
    assert ledger.observe_event("status", {"delivered_total_ml": 150.0}) is None  # once
    assert ledger.device_ml == pytest.approx(60.0) and ledger.uncommanded_ml == pytest.approx(20)


def test_without_counters_the_ledger_still_sees_a_start_nobody_sent():
    ledger = ContrastLedger()
    ledger.baseline(_status(0.0))
    assert ledger.device_ml is None
    assert ledger.observe_event("injection_started", {"started_at_s": 3.0}) is not None


def _status(delivered: float, **counters: Any) -> Any:
    from drivers import InjectorStatus

    return InjectorStatus(InjectorState.IDLE, delivered, 0.0, 0.0, None, None, **counters)


# -- whole exams, in process ----------------------------------------------------------------
def test_a_second_injection_started_at_the_injector_ends_the_exam(run_protocol):
    # T+35s: the 20 s injection has completed; someone starts it again at the injector
    exam = run(run_protocol, MATRIX, "injector.local_start@T+35s")
    assert exam.outcome.state == "faulted", exam.outcome.reason
    assert "uncommanded injection" in exam.outcome.reason
    [line] = safety_lines(exam)
    assert line.data["device_starts"] == 2 and line.data["commanded_starts"] == 1
    assert line.data["decision"] == "abort"
    assert any(e.data.get("fault") == "uncommanded_injection" for e in exam.events_of("fault")), (
        "the fault is noted"
    )
    abort = exam.events_of("abort")[0]
    assert abort.data["confirmed"]["injector"] == "safe"
    assert abort.data["since_detection_s"] <= 0.100
    totals = exam.summary["totals"]
    # stopped within the motor's take-up: the patient got the commanded 40 mL, as the
    # injector itself reports it
    assert totals["contrast_commanded_ml"] == pytest.approx(40.0)
    assert totals["contrast_delivered_ml"] == pytest.approx(40.0, abs=0.5)
    assert "injector.uncommanded_injection" in exam.summary["faults"]
    assert not exam.step("film-1min").images and exam.step("film-3min").status == "skipped"
    # the images taken before it are kept
    assert exam.step("film-10s").images


def test_a_start_at_the_injector_before_the_scheduler_sent_one_ends_the_exam(
    run_protocol, tmp_path
):
    protocol = tmp_path / "inject-first.yaml"
    protocol.write_text(INJECT_FIRST)
    exam = run(run_protocol, protocol, "injector.local_start@2s")  # armed, awaiting confirm
    assert exam.outcome.state == "faulted", exam.outcome.reason
    [line] = safety_lines(exam)
    assert line.data["commanded_starts"] == 0 and line.data["device_starts"] == 1
    commands = [e.data.get("command") for e in exam.events_of("command")]
    assert "start_injection" not in commands, "the scheduler never sent a start"
    assert exam.summary["totals"]["contrast_commanded_ml"] == 0.0
    assert exam.summary["injection_start"] is None


def test_the_device_reported_volume_wins_when_the_second_injection_was_not_seen(
    run_protocol, monkeypatch
):
    """The intruder also hid the device's events (its second injection ran 20 s unseen):
    the scheduler's last status read finds it, and the summary reports what the device gave,
    not what the scheduler commanded."""
    original = SimInjector.local_start

    def silent_local_start(self: SimInjector) -> str:
        self._publish = lambda _event: None  # type: ignore[method-assign]
        return original(self)

    monkeypatch.setattr(SimInjector, "local_start", silent_local_start)
    exam = run(run_protocol, MATRIX, "injector.local_start@T+35s")
    assert exam.outcome.state == "faulted", exam.outcome.reason
    [line] = safety_lines(exam)
    assert line.data["device_ml"] == pytest.approx(80.0, abs=0.5)
    totals = exam.summary["totals"]
    assert totals["contrast_commanded_ml"] == pytest.approx(40.0)
    assert totals["contrast_delivered_ml"] == pytest.approx(80.0, abs=0.5)
    assert totals["contrast_uncommanded_ml"] == pytest.approx(40.0, abs=0.5)
    finished = exam.events_of("exam_finished")[0]
    assert finished.data["contrast_delivered_ml"] == pytest.approx(80.0, abs=0.5)


def test_the_room_policy_may_let_imaging_continue(run_protocol, tmp_path):
    room = tmp_path / "room.yaml"
    room.write_text(
        (ROOT / "configs/rooms/simulator.yaml").read_text()
        + "  faults:\n    injector: {uncommanded_injection: continue}\n"
    )
    room.write_text(
        room.read_text().replace("patient: normal", f"patient: {ROOT}/configs/patients/normal.yaml")
    )
    exam = run_protocol(
        MATRIX, room=room, faults=["injector.local_start@T+35s"], wall_anchor=WALL_ANCHOR
    )
    assert exam.outcome.state == "completed", exam.outcome.reason
    [line] = safety_lines(exam)
    assert line.data["decision"] == "continue"
    stops = exam.events_of("injection_stop_confirmed")
    assert stops and stops[0].data["result"] == "stopped"


def test_a_normal_exam_raises_no_alarm(run_protocol):
    exam = run(run_protocol, MATRIX)
    assert exam.outcome.state == "completed", exam.outcome.reason
    assert safety_lines(exam) == []
    totals = exam.summary["totals"]
    assert totals["contrast_commanded_ml"] == pytest.approx(40.0)
    assert totals["contrast_delivered_ml"] == pytest.approx(40.0, abs=0.05)
    assert totals["contrast_uncommanded_ml"] == pytest.approx(0.0, abs=0.05)


def test_the_operator_is_alerted():
    from scheduler.exam.bus import Recorded
    from scheduler.exam.events import UncommandedInjection

    progress = ExamProgress("p")
    event = UncommandedInjection(
        evidence="the injector reports 2 injection(s) started",
        device_ml=80.0,
        device_starts=2,
        commanded_ml=40.0,
        commanded_starts=1,
        decision="abort",
    )
    progress.on_event(Recorded(event, 1.0, "", 1))
    assert progress.message.startswith("ALERT") and "2 injection(s)" in progress.message


# -- over `sim serve` links ---------------------------------------------------------------------
@pytest.fixture
def sim_serve(tmp_path: Path) -> Iterator[Callable[..., SimServe]]:
    started: list[SimServe] = []

    def start(*extra: str) -> SimServe:
        started.append(start_sim_serve(tmp_path, *extra))
        return started[-1]

    yield start
    for serve in started:
        stop_sim_serve(serve)


@pytest.mark.links
def test_a_local_start_over_real_links_is_journaled_and_ends_the_exam(sim_serve, tmp_path):
    # 40 mL over 30 s; at T+40s it has completed and is started again at the injector
    serve = sim_serve("--fault", "injector.local_start@T+40s")
    out = tmp_path / "exam"
    run_ = cli("run", str(ACCELERATED), *serve.run_args(), "--out", str(out), timeout=120)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "faulted", (summary.get("reason"), run_.stderr[-2000:])
    lines = [e for e in events if e["kind"] == "uncommanded_injection"]
    assert [e["source"] for e in lines] == ["safety"], summary.get("reason")
    assert lines[0]["data"]["device_starts"] == 2
    assert summary["totals"]["contrast_commanded_ml"] == pytest.approx(40.0)
    assert summary["totals"]["contrast_delivered_ml"] >= 40.0 - 0.5


def test_the_counters_reach_the_host_over_the_wire(run_virtual):
    from tests.wire.test_remote_drivers import wired_room

    async def go() -> None:
        async with wired_room() as w:
            seen: list[Any] = []
            w.injector.subscribe(seen.append)
            await w.injector.arm(PROGRAM)
            await w.injector.start()
            await w.injector.wait_finished(timeout_s=60.0)
            w.sim.injector.local_start()
            await asyncio.sleep(25.0)
            status = await w.injector.status()
            assert status.delivered_total_ml == pytest.approx(80.0)
            assert status.injections_started == 2
            started = [e for e in seen if e.kind == "injection_started"]
            assert [e.data["injections_started"] for e in started] == [1, 2]

    run_virtual(go)
