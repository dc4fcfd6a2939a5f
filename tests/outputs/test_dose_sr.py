"""The X-Ray Radiation Dose SR each exam leaves (``dose-sr.dcm``), read back and checked
against what the exam journaled and summarised.

The standard exam (radiographs), the obstruction exam (a pulsed fluoroscopy run) and the
nephrotomography exam (two tomosynthesis sweeps of three layers each) run once per session on
the in-process simulator. The expected events come from the journal's ``capture`` lines, one
per image, grouped by step (a step makes one irradiation: a radiograph, a run, a sweep), and
the totals from ``summary.json``'s ``totals``, which the summary sums over the frames the
C-arm reported — not from the SR's own code.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from fluoroctl.testing import ExamRun, JournalEntry, RunProtocol
from scheduler.protocol import FluoroStep, load_protocol

ROOT = Path(__file__).resolve().parents[2]
EXAMS = {
    "standard": ("ivu-standard", None),
    "obstruction": ("ivu-obstruction", "left-obstruction"),
    "nephrotomography": ("ivu-nephrotomography", None),
}
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module", params=sorted(EXAMS))
def exam(request: pytest.FixtureRequest, shared_exam: RunProtocol) -> ExamRun:
    protocol, patient = EXAMS[request.param]
    return shared_exam(protocol, patient=patient) if patient else shared_exam(protocol)


def _concept(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue)


def _children(item: Dataset) -> Iterator[Dataset]:
    yield from item.get("ContentSequence", [])


def _num(container: Dataset, code: str) -> tuple[float, str]:
    matches = [c for c in _children(container) if _concept(c) == code and c.ValueType == "NUM"]
    assert len(matches) == 1, f"{code}: {len(matches)} NUM items"
    mv = matches[0].MeasuredValueSequence[0]
    return float(mv.NumericValue), str(mv.MeasurementUnitsCodeSequence[0].CodeValue)


def _value(container: Dataset, code: str) -> Any:
    (item,) = [c for c in _children(container) if _concept(c) == code]
    match item.ValueType:
        case "CODE":
            return str(item.ConceptCodeSequence[0].CodeValue)
        case "UIDREF":
            return str(item.UID)
        case "TEXT":
            return str(item.TextValue)
        case "DATETIME":
            return str(item.DateTime)
    raise AssertionError(f"{code}: unexpected {item.ValueType}")


def _expected_events(run: ExamRun) -> dict[str, list[JournalEntry]]:
    by_step: dict[str, list[JournalEntry]] = defaultdict(list)
    for line in run.events_of("capture", source="scheduler"):
        assert line.step is not None
        by_step[line.step].append(line)
    return by_step


@pytest.fixture(scope="module")
def sr(exam: ExamRun) -> Dataset:
    path = exam.out / "dose-sr.dcm"
    assert path.is_file(), "the exam left no dose-sr.dcm"
    return pydicom.dcmread(path)


def _events(sr: Dataset) -> list[Dataset]:
    return [c for c in _children(sr) if _concept(c) == "113706"]


def test_sr_is_an_xray_radiation_dose_report_of_the_exams_study(exam: ExamRun, sr: Dataset) -> None:
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.67"
    assert sr.file_meta.MediaStorageSOPClassUID == sr.SOPClassUID
    assert sr.Modality == "SR"
    assert _concept(sr) == "113701"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "10001"
    assert sr.ContentTemplateSequence[0].MappingResource == "DCMR"
    assert _value(sr, "121058") == "113704"  # Procedure reported: Projection X-Ray
    image = pydicom.dcmread(exam.images[0], stop_before_pixels=True)
    assert sr.StudyInstanceUID == exam.summary["study_instance_uid"] == image.StudyInstanceUID
    assert sr.PatientID == image.PatientID and sr.PatientName == image.PatientName
    series = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in exam.images}
    assert sr.SeriesInstanceUID not in series
    # the device observer (TID 1002/1004) is the C-arm of the room's station
    assert _value(sr, "121005") == "121007"
    assert _value(sr, "121013") == image.StationName
    assert _value(sr, "121014") == image.Manufacturer
    assert _value(sr, "121016") == image.DeviceSerialNumber
    assert _value(sr, "113705") == "113014"  # scope: the study
    mode = stat.S_IMODE(os.stat(exam.out / "dose-sr.dcm").st_mode)
    assert mode & 0o444 == 0o444 and not mode & 0o022


def test_one_irradiation_event_per_radiograph_run_and_sweep(exam: ExamRun, sr: Dataset) -> None:
    expected = _expected_events(exam)
    events = _events(sr)
    assert len(events) == len(expected)
    uids = {}
    for path in exam.images:
        h = pydicom.dcmread(path, stop_before_pixels=True)
        uids[path.name] = str(h.IrradiationEventUID)
    by_uid = {_value(e, "113769"): e for e in events}
    assert len(by_uid) == len(events), "an Irradiation Event UID appears twice"
    for step, lines in expected.items():
        files = {str(line.data["file"]) for line in lines}
        (uid,) = {uids[f] for f in files}  # the images of one step: one event
        event = by_uid[uid]
        kind = str(lines[0].data["image_kind"])
        event_type = {"fluoro": "44491008", "tomo": "113613"}.get(kind, "113611")
        assert _value(event, "113721") == event_type, step
        assert _value(event, "113764") == "113622"  # single plane
        assert _value(event, "123014") == "818981001"  # target region: abdomen
        assert _value(event, "113780") == "113860"  # RP: 15 cm from isocentre toward source
        dap, unit = _num(event, "122130")
        assert unit == "Gy.m2"
        journal_dap = sum(float(line.data["dap_gy_cm2"]) for line in lines)
        assert dap == pytest.approx(journal_dap / 1e4, rel=1e-9)
        dose_rp, unit = _num(event, "113738")
        assert unit == "Gy"
        kerma = sum(float(line.data["reference_air_kerma_mgy"]) for line in lines)
        assert dose_rp == pytest.approx(kerma / 1e3, rel=1e-9)
        assert _num(event, "113733")[0] == pytest.approx(float(lines[0].data["kv"]))
        assert _num(event, "113734")[1] == "mA" and _num(event, "113734")[0] > 0
        assert _num(event, "113824")[1] == "ms" and _num(event, "113824")[0] > 0
        assert _num(event, "113790")[1] == "m2"  # collimated field area
        referenced = {
            str(c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for c in _children(event)
            if c.ValueType == "IMAGE"
        }
        assert referenced == {
            str(pydicom.dcmread(exam.out / f, stop_before_pixels=True).SOPInstanceUID)
            for f in files
        }
        if kind == "tomo":  # one sweep: its dose once, whatever the number of layers
            assert len(files) > 1
            assert journal_dap > 0
        if kind == "fluoro":
            protocol = load_protocol(ROOT / "configs" / "protocols" / "ivu-obstruction.yaml")
            (fluoro_step,) = [s for s in protocol.steps if s.id == step]
            assert isinstance(fluoro_step, FluoroStep)
            assert _value(event, "113732") == "113631"  # pulsed
            assert _num(event, "113791")[0] == pytest.approx(fluoro_step.pulse_rate_hz)
            assert _num(event, "113768")[0] == int(lines[0].data["frames"])
            # the run's duration, not its pulse widths (21 CFR 1020.30(b))
            assert _num(event, "113742")[0] == pytest.approx(fluoro_step.duration_s)


def test_accumulated_totals_are_the_sums_and_the_summary(exam: ExamRun, sr: Dataset) -> None:
    (acc,) = [c for c in _children(sr) if _concept(c) == "113702"]
    events = _events(sr)
    totals = exam.summary["totals"]

    def event_sum(code: str, kinds: set[str] | None = None) -> float:
        return sum(
            _num(e, code)[0] for e in events if kinds is None or _value(e, "113721") in kinds
        )

    fluoro, acquisition = {"44491008"}, {"113611", "113613"}
    assert _num(acc, "113722")[0] == pytest.approx(event_sum("122130"), rel=1e-9)
    assert _num(acc, "113725")[0] == pytest.approx(event_sum("113738"), rel=1e-9)
    assert _num(acc, "113726")[0] == pytest.approx(event_sum("122130", fluoro), abs=1e-15)
    assert _num(acc, "113727")[0] == pytest.approx(event_sum("122130", acquisition), rel=1e-9)
    assert _num(acc, "113728")[0] == pytest.approx(event_sum("113738", fluoro), abs=1e-15)
    assert _num(acc, "113729")[0] == pytest.approx(event_sum("113738", acquisition), rel=1e-9)
    assert _num(acc, "113730")[0] == pytest.approx(event_sum("113742", fluoro), abs=1e-9)
    # the summary's totals, summed over the frames the C-arm reported
    assert _num(acc, "113722")[0] * 1e4 == pytest.approx(totals["dap_gy_cm2"], abs=1e-4)
    assert _num(acc, "113725")[0] * 1e3 == pytest.approx(
        totals["reference_air_kerma_mgy"], abs=1e-3
    )
    assert _num(acc, "113730")[0] == pytest.approx(totals["fluoro_time_s"], abs=1e-6)
    assert _num(acc, "113731")[0] == totals["radiographic_exposures"] + totals["tomo_sweeps"]
    assert _value(acc, "113780") == "113860"


def test_dciodvfy_reports_no_error(exam: ExamRun) -> None:
    if DCIODVFY is None:
        pytest.fail("dciodvfy not found: install dicom3tools (apt-get install dicom3tools)")
    for flags in ((), ("-new",)):
        done = subprocess.run(
            [DCIODVFY, *flags, str(exam.out / "dose-sr.dcm")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        report = done.stdout + done.stderr
        assert "XRayRadiationDoseSR" in report
        assert [ln for ln in report.splitlines() if ln.startswith("Error")] == [], report


def test_dcentvfy_finds_no_error_across_the_images_and_the_sr(exam: ExamRun) -> None:
    exe = shutil.which("dcentvfy")
    if exe is None:
        pytest.fail("dcentvfy not found: install dicom3tools (apt-get install dicom3tools)")
    files = [str(p) for p in exam.images] + [str(exam.out / "dose-sr.dcm")]
    done = subprocess.run([exe, *files], capture_output=True, text=True, timeout=120)
    errors = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []
