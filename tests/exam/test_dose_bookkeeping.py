"""Dose bookkeeping as a regulator reads it: fluoroscopy time is the runs' duration (21 CFR
1020.30(b)), its alert comes at each passage of the room's interval (1020.32(h)), the
substantial radiation dose level (NCRP 168) is a room setting that is journaled, and a
tomosynthesis sweep's dose is stated once per irradiation, on every layer consistently.

Whole exams on the in-process simulator (virtual time); expected values come from the
protocol (run durations, techniques) and the journal, not from the code under test.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from fluoroctl.testing import ExamRun, RunProtocol
from scheduler.exam.bus import Recorded
from scheduler.exam.events import Captured, DoseNoticed, Kind
from scheduler.exam.progress import ExamProgress
from scheduler.policy import DoseLimits
from scheduler.progress import NOTABLE
from scheduler.protocol import FluoroStep, TomoStep, load_protocol
from scheduler.room import load_room
from scheduler.safety import DoseMonitor

ROOT = Path(__file__).resolve().parents[2]
OBSTRUCTION = ROOT / "configs" / "protocols" / "ivu-obstruction.yaml"
NEPHROTOMO = ROOT / "configs" / "protocols" / "ivu-nephrotomography.yaml"


def _room(**dose: float) -> object:
    room = load_room(ROOT / "configs" / "rooms" / "simulator.yaml")
    return room.model_copy(update={"dose": DoseLimits.model_validate(dose)})


def _fluoro_steps() -> list[FluoroStep]:
    return [s for s in load_protocol(OBSTRUCTION).steps if isinstance(s, FluoroStep)]


@pytest.fixture(scope="module")
def obstruction_2s_timer(shared_exam: RunProtocol) -> ExamRun:
    """The obstruction exam (one 4-s pulsed run) in a room whose fluoroscopy timer sounds
    every 2 s instead of every 5 min: the run must sound it twice."""
    return shared_exam(
        "ivu-obstruction", patient="left-obstruction", room=_room(fluoro_alert_interval_s=2.0)
    )


def test_fluoro_time_is_the_runs_duration_not_their_pulse_widths(
    obstruction_2s_timer: ExamRun,
) -> None:
    runs = _fluoro_steps()
    assert runs, "the obstruction protocol has a fluoroscopy run"
    duration = sum(s.duration_s for s in runs)
    pulse_widths = sum(s.duration_s * s.pulse_rate_hz * s.technique.pulse_ms / 1000.0 for s in runs)
    assert pulse_widths < duration / 10  # the two readings are far apart
    totals = obstruction_2s_timer.summary["totals"]
    assert totals["fluoro_time_s"] == pytest.approx(duration)
    assert obstruction_2s_timer.summary["dose"]["totals"]["fluoro_time_s"] == pytest.approx(
        duration
    )


def test_fluoro_timer_alert_at_each_passage_of_the_rooms_interval(
    obstruction_2s_timer: ExamRun,
) -> None:
    duration = sum(s.duration_s for s in _fluoro_steps())
    alerts = obstruction_2s_timer.events_of("fluoro_timer_alert", source="safety")
    assert len(alerts) == int(duration // 2.0)
    assert [a.data["message"] for a in alerts][:2] == [
        "0.0333333 min of fluoroscopy: audible alert, reset to continue",
        "0.0666667 min of fluoroscopy: audible alert, reset to continue",
    ]
    # the page and the summary carry them
    kinds = [a["kind"] for a in obstruction_2s_timer.summary["dose"]["alerts"]]
    assert kinds.count("fluoro_timer_alert") == len(alerts)


def test_the_default_fluoro_alert_comes_at_five_minutes() -> None:
    monitor = DoseMonitor(DoseLimits())
    # a 4 min 59 s run, then a 2-s run: the alert comes with the second, at 5 min
    assert monitor.add(0.0, fluoro_s=299.0, run_s=299.0) == []
    (alert,) = monitor.add(0.0, fluoro_s=2.0, run_s=2.0)
    assert alert.kind == "fluoro_timer_alert" and alert.message.startswith("5 min")
    assert [n.kind for n in monitor.add(0.0, fluoro_s=300.0, run_s=300.0)] == ["fluoro_timer_alert"]


def test_fluoro_refused_when_its_run_time_would_pass_the_rooms_limit() -> None:
    monitor = DoseMonitor(DoseLimits(max_fluoro_time_s=10.0))
    monitor.check_fluoro(9.0, kv=75, ma=1, pulse_ms=8, rate_hz=3.75)  # 9 s: allowed
    with pytest.raises(Exception, match=r"fluoroscopy time would reach 11\.0 s"):
        monitor.check_fluoro(11.0, kv=75, ma=1, pulse_ms=8, rate_hz=3.75)


def test_substantial_dose_level_is_a_room_setting_and_journaled(shared_exam: RunProtocol) -> None:
    run = shared_exam(
        "ivu-standard",
        room=_room(air_kerma_notify_mgy=1e6, substantial_dose_level_mgy=10.0),
    )
    kerma = run.summary["totals"]["reference_air_kerma_mgy"]
    assert kerma > 10.0  # the standard exam passes the (lowered) level
    notes = run.events_of("air_kerma_notification", source="safety")
    assert len(notes) == 1
    assert "10 mGy" in notes[0].data["message"]
    assert "substantial radiation dose level" in notes[0].data["message"]
    assert run.summary["dose"]["levels"]["substantial_dose_level_mgy"] == 10.0
    (alert,) = run.summary["dose"]["alerts"]
    assert alert["kind"] == "air_kerma_notification"


def test_tomo_layers_state_their_sweeps_dose_once_per_irradiation(
    shared_exam: RunProtocol,
) -> None:
    run = shared_exam("ivu-nephrotomography")
    sweeps = {s.id: s for s in load_protocol(NEPHROTOMO).steps if isinstance(s, TomoStep)}
    journal_dap: dict[str, float] = defaultdict(float)
    files: dict[str, list[str]] = defaultdict(list)
    for line in run.events_of("capture", source="scheduler"):
        if line.step in sweeps:
            journal_dap[line.step] += float(line.data["dap_gy_cm2"])
            files[line.step].append(str(line.data["file"]))
    assert set(files) == set(sweeps)
    for step, names in files.items():
        assert len(names) == len(sweeps[step].layer_heights_mm) > 1
        headers = [pydicom.dcmread(run.out / n, stop_before_pixels=True) for n in names]
        assert len({str(h.IrradiationEventUID) for h in headers}) == 1
        technique = sweeps[step].technique
        assert technique is not None
        for h in headers:  # no layer claims mAs with a zero dose
            assert float(h.ImageAndFluoroscopyAreaDoseProduct) == pytest.approx(
                journal_dap[step] * 10.0, rel=1e-5
            )
            assert int(h.Exposure) == round(technique.mas)
    # the sweep counts once in the exam's totals and in the dose section
    dose = run.summary["dose"]
    tomo_events = [e for e in dose["events"] if e["kind"] == "tomo"]
    assert len(tomo_events) == len(sweeps)
    assert dose["totals"]["dap_gy_cm2"] == pytest.approx(
        run.summary["totals"]["dap_gy_cm2"], abs=1e-4
    )


def test_progress_shows_fluoro_time_dap_and_dose_alerts() -> None:
    progress = ExamProgress("p")
    monitor = DoseMonitor(DoseLimits())
    progress.dose = monitor
    monitor.add(1.0, fluoro_s=4.0, run_s=4.0)
    assert progress.fluoro_time_s == 4.0
    seq = iter(range(1, 100))

    def fold(event: object) -> None:
        progress.on_event(Recorded(event, 0.0, "", next(seq)))  # type: ignore[arg-type]

    fold(
        DoseNoticed(
            step="fluoro",
            notice=Kind.FLUORO_TIMER_ALERT,
            message="5 min of fluoroscopy: audible alert, reset to continue",
            value=300.0,
        )
    )
    assert progress.dose_alerts == ["5 min of fluoroscopy: audible alert, reset to continue"]
    fold(
        Captured(
            step="s",
            file="001-s.dcm",
            image_kind="radiograph",
            frames=1,
            planned_s=None,
            commanded_s=0.0,
            device_s=0.0,
            after_injection_s=None,
            position="supine",
            kv=70.0,
            mas=32.0,
            layer_height_mm=None,
            reference_air_kerma_mgy=3.0,
            dap_gy_cm2=1.5,
        )
    )
    assert progress.dap_gy_cm2 == 1.5
    assert {"fluoro_timer_alert", "air_kerma_notification", "dose_rate_exceeded"} <= NOTABLE
