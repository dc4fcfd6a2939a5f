"""Hazard: the RIS never learns the procedure step was performed (or ended early), or learns
it wrong: no N-CREATE, an N-SET before its N-CREATE, images missing from the performed
series, a step left IN PROGRESS after a crash.

A pynetdicom MPPS SCP (the ``mpps_scp`` fixture) records what it is sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest

import fluoroctl
from scheduler.cli_dicom import main as dicom_main
from scheduler.hospital.sender import CRASH_ENV

from .conftest import MppsScp, dicom_room, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.peers  # real DICOM peers, started per test on free ports; virtual-time exams, so they run with the parallel tests


def mpps_peer(scp: MppsScp) -> dict[str, Any]:
    return {"ae": scp.ae, "host": "127.0.0.1", "port": scp.port, "timeout_s": 5}


def files(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(out.glob("*.dcm"))]


def referenced(ds: pydicom.Dataset) -> list[str]:
    """Every object the step performed: images, and the dose report as a non-image object."""
    return sorted(
        str(ref.ReferencedSOPInstanceUID)
        for series in ds.PerformedSeriesSequence
        for ref in (
            *series.ReferencedImageSequence,
            *series.get("ReferencedNonImageCompositeSOPInstanceSequence", []),
        )
    )


def test_the_dose_report_is_a_non_image_object_of_the_step(tmp_path, mpps_scp: MppsScp):
    room = dicom_room(tmp_path / "room.yaml", mpps=mpps_peer(mpps_scp), outbox={"wait_s": 30})
    out = tmp_path / "exam"
    fluoroctl.run_exam("ivu-standard", room=room, out=out)
    (sr,) = [ds for ds in files(out) if ds.Modality == "SR"]
    final = mpps_scp.instances[mpps_scp.creates[0][0]]
    non_image = [
        str(ref.ReferencedSOPInstanceUID)
        for series in final.PerformedSeriesSequence
        for ref in series.get("ReferencedNonImageCompositeSOPInstanceSequence", [])
    ]
    assert non_image == [str(sr.SOPInstanceUID)]
    # one exposure per irradiation event (the standard exam has no sweep: one per image)
    assert final.TotalNumberOfExposures == len(files(out)) - 1


def test_a_completed_exam_is_reported_in_progress_then_completed(tmp_path, mpps_scp: MppsScp):
    room = dicom_room(tmp_path / "room.yaml", mpps=mpps_peer(mpps_scp), outbox={"wait_s": 30})
    out = tmp_path / "exam"
    fluoroctl.run_exam("ivu-standard", room=room, out=out)
    images = files(out)
    assert [kind for kind, _ in mpps_scp.log] == ["n-create", "n-set"]
    uid, created = mpps_scp.creates[0]
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert created.PatientID == images[0].PatientID
    step = created.ScheduledStepAttributesSequence[0]
    assert step.AccessionNumber == images[0].AccessionNumber
    assert step.StudyInstanceUID == images[0].StudyInstanceUID
    assert created.Modality == "RF"
    final = mpps_scp.instances[uid]
    assert final.PerformedProcedureStepStatus == "COMPLETED"
    assert referenced(final) == sorted(str(i.SOPInstanceUID) for i in images)
    assert {s.SeriesInstanceUID for s in final.PerformedSeriesSequence} == {
        i.SeriesInstanceUID for i in images
    }
    summary = json.loads((out / "summary.json").read_text())
    assert final.TotalNumberOfExposures == len([i for i in images if i.Modality != "SR"])
    assert float(final.ImageAndFluoroscopyAreaDoseProduct) == pytest.approx(
        summary["totals"]["dap_gy_cm2"] * 10, rel=1e-3
    )
    assert len(final.ExposureDoseSequence) == final.TotalNumberOfExposures
    assert float(final.ExposureDoseSequence[0].KVP) == float(images[0].KVP)
    assert [m["state"] for m in summary["dicom"]["mpps"]] == ["sent", "sent"]


def test_an_aborted_exam_is_discontinued_with_a_reason(tmp_path, mpps_scp: MppsScp):
    room = dicom_room(tmp_path / "room.yaml", mpps=mpps_peer(mpps_scp), outbox={"wait_s": 30})
    out = tmp_path / "exam"
    outcome = fluoroctl.run_exam(
        "ivu-accelerated", room=room, out=out, faults=["carm.link_lost@T+30s"]
    )
    assert outcome.state in ("aborted", "faulted")
    uid, _ = mpps_scp.creates[0]
    final = mpps_scp.instances[uid]
    assert final.PerformedProcedureStepStatus == "DISCONTINUED"
    reason = final.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
    assert (reason.CodeValue, reason.CodingSchemeDesignator) == ("110501", "DCM")
    assert referenced(final) == sorted(str(i.SOPInstanceUID) for i in files(out))


def test_the_n_set_waits_until_its_n_create_is_accepted(tmp_path, mpps_scp: MppsScp):
    mpps_scp.refuse_next = [0x0110, 0x0110]  # the RIS fails the first two tries
    room = dicom_room(
        tmp_path / "room.yaml",
        mpps=mpps_peer(mpps_scp),
        outbox={"wait_s": 30, "retry_initial_s": 0.1, "retry_max_s": 0.2},
    )
    out = tmp_path / "exam"
    fluoroctl.run_exam("ivu-standard", room=room, out=out)
    kinds = [(kind, status) for kind, status in mpps_scp.log]
    assert kinds == [
        ("n-create", 0x0110),
        ("n-create", 0x0110),
        ("n-create", 0x0000),
        ("n-set", 0x0000),
    ]


def test_a_ris_down_during_the_exam_gets_both_messages_in_order_later(tmp_path):
    port = free_port()
    room = dicom_room(
        tmp_path / "room.yaml",
        mpps={"ae": "RIS", "host": "127.0.0.1", "port": port, "timeout_s": 5},
        outbox={"wait_s": 0.5},
    )
    out = tmp_path / "exam"
    fluoroctl.run_exam("ivu-standard", room=room, out=out)
    summary = json.loads((out / "summary.json").read_text())
    assert [(m["kind"], m["state"]) for m in summary["dicom"]["mpps"]] == [
        ("n-create", "queued"),
        ("n-set", "queued"),
    ]
    scp = MppsScp(port=port)
    try:
        assert dicom_main(["dicom", "flush", str(out), "--timeout", "30"]) == 0
        assert [kind for kind, _ in scp.log] == ["n-create", "n-set"]
        ((uid, _),) = scp.creates
        assert scp.status_of(uid) == "COMPLETED"
    finally:
        scp.stop()


def test_a_sender_killed_after_the_n_create_was_accepted_completes_the_step(tmp_path):
    port = free_port()
    room = dicom_room(
        tmp_path / "room.yaml",
        mpps={"ae": "RIS", "host": "127.0.0.1", "port": port, "timeout_s": 5},
        outbox={"wait_s": 0},
    )
    out = tmp_path / "exam"
    fluoroctl.run_exam("ivu-standard", room=room, out=out)
    scp = MppsScp(port=port)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "scheduler.cli_dicom", "dicom", "flush", str(out)],
            cwd=ROOT,
            env={**os.environ, CRASH_ENV: "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == -9, proc.stderr[-2000:]
        assert [kind for kind, _ in scp.log] == ["n-create"]  # accepted, not recorded
        assert dicom_main(["dicom", "flush", str(out), "--timeout", "30"]) == 0
        # Sent again: the RIS says it has it (0x0111), which settles it; then the N-SET.
        assert scp.log == [("n-create", 0x0000), ("n-create", 0x0111), ("n-set", 0x0000)]
        (uid, _), *_ = scp.creates
        assert scp.status_of(uid) == "COMPLETED"
    finally:
        scp.stop()
