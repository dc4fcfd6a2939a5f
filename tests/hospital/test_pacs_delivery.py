"""Hazard: images acquired on a patient that never reach PACS, or reach it twice.

The standard exam on the in-process simulator (virtual time) with a real Orthanc as PACS,
checked through Orthanc's REST API: everything written arrives, a PACS that is down (from
the start or from mid-exam) gets everything when it comes back, a sender killed with
SIGKILL between PACS's answer and its own record loses nothing and leaves no duplicate, and
Storage Commitment marks objects committed only when PACS's report says so.
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

from .conftest import Orthanc, dicom_room, orthanc_destination

ROOT = Path(__file__).resolve().parents[2]
#: what the standard exam writes: its 7 images and the dose report (X-Ray Radiation Dose SR)
IMAGES = 7
OBJECTS = IMAGES + 1
#: real peers, real time for delivery: run with the other network tests (-m links)
pytestmark = pytest.mark.peers  # real DICOM peers, started per test on free ports; virtual-time exams, so they run with the parallel tests


def run(room: Path, out: Path, on_event: Any = None, protocol: str = "ivu-standard") -> Any:
    return fluoroctl.run_exam(protocol, room=room, out=out, on_event=on_event)


def written_uids(out: Path) -> list[str]:
    """The SOP Instance UIDs of every DICOM file the exam wrote (read from the files)."""
    return sorted(
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in out.glob("*.dcm")
    )


def dicom_summary(out: Path) -> dict[str, Any]:
    section: dict[str, Any] = json.loads((out / "summary.json").read_text())["dicom"]
    return section


def states(out: Path) -> list[str]:
    return [
        state["state"]
        for o in dicom_summary(out)["objects"]
        for state in o["destinations"].values()
    ]


def test_the_standard_exam_arrives_in_orthanc_whole(tmp_path, orthanc: Orthanc):
    room = dicom_room(
        tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc)], outbox={"wait_s": 30}
    )
    out = tmp_path / "exam"
    outcome = run(room, out)
    assert outcome.state == "completed"
    uids = written_uids(out)
    assert len(uids) == OBJECTS
    assert orthanc.count("studies") == 1
    assert orthanc.count("instances") == len(uids)
    assert sorted(orthanc.instance_uids()) == uids
    series = {
        pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in out.glob("*.dcm")
    }
    assert orthanc.count("series") == len(series)
    tags = orthanc.tags(orthanc.instance_ids()[0])
    first = pydicom.dcmread(next(out.glob("*.dcm")), stop_before_pixels=True)
    assert tags["PatientID"] == first.PatientID
    assert tags["StudyInstanceUID"] == first.StudyInstanceUID
    assert states(out) == ["sent"] * OBJECTS  # no commitment asked: sent is the end
    assert dicom_summary(out)["undelivered"] == 0


def test_pacs_down_from_the_start_gets_everything_once_it_is_up(
    tmp_path, orthanc_stopped: Orthanc, capsys
):
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[orthanc_destination(orthanc_stopped)],
        outbox={"wait_s": 0.5},
    )
    out = tmp_path / "exam"
    outcome = run(room, out)
    assert outcome.state == "completed"  # PACS down does not change the exam's outcome
    assert states(out) == ["queued"] * OBJECTS
    assert all(
        d["last_error"] for o in dicom_summary(out)["objects"] for d in o["destinations"].values()
    )
    orthanc_stopped.start()
    assert dicom_main(["dicom", "flush", str(out), "--timeout", "60"]) == 0
    assert sorted(orthanc_stopped.instance_uids()) == written_uids(out)
    assert orthanc_stopped.count("instances") == OBJECTS


def test_pacs_stopped_mid_exam_gets_the_rest_when_it_is_back(tmp_path, orthanc: Orthanc):
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[orthanc_destination(orthanc)],
        outbox={"wait_s": 0.5, "retry_initial_s": 0.2, "retry_max_s": 1},
    )
    out = tmp_path / "exam"
    captures = 0

    def stop_at_the_fourth_image(line: Any) -> None:
        nonlocal captures
        if line.kind == "capture":
            captures += 1
            if captures == 4:
                orthanc.stop()

    run(room, out, on_event=stop_at_the_fourth_image)
    assert captures == IMAGES
    assert states(out).count("queued") >= 3  # images 5-7 (and the SR) came with PACS down
    orthanc.start()
    assert dicom_main(["dicom", "flush", str(out), "--timeout", "60"]) == 0
    assert sorted(orthanc.instance_uids()) == written_uids(out)
    assert orthanc.count("instances") == OBJECTS


def test_sender_killed_between_pacs_answer_and_its_record_loses_nothing_duplicates_nothing(
    tmp_path, orthanc_stopped: Orthanc
):
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[orthanc_destination(orthanc_stopped)],
        outbox={"wait_s": 0},
    )
    out = tmp_path / "exam"
    run(room, out)
    assert states(out) == ["queued"] * OBJECTS  # the whole exam is the backlog
    orthanc_stopped.start()
    env = {**os.environ, CRASH_ENV: "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli_dicom", "dicom", "flush", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL mid-transfer
    assert orthanc_stopped.count("instances") == 3  # PACS has the third; our record does not
    status = subprocess.run(
        [sys.executable, "-m", "scheduler.cli_dicom", "dicom", "status", str(out), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    after_crash = [
        d["state"] for o in json.loads(status.stdout)["objects"] for d in o["destinations"].values()
    ]
    assert after_crash == ["sent", "sent"] + ["queued"] * (OBJECTS - 2)
    assert dicom_main(["dicom", "flush", str(out), "--timeout", "60"]) == 0
    uids = written_uids(out)
    assert orthanc_stopped.count("instances") == len(uids) == OBJECTS
    assert sorted(orthanc_stopped.instance_uids()) == uids  # each exactly once


def test_storage_commitment_marks_objects_committed(tmp_path, orthanc: Orthanc):
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[orthanc_destination(orthanc, commitment=True)],
        outbox={"wait_s": 30, "commitment_port": orthanc.modality_port},
    )
    out = tmp_path / "exam"
    run(room, out)
    assert states(out) == ["committed"] * OBJECTS
    assert all(
        d["committed"] for o in dicom_summary(out)["objects"] for d in o["destinations"].values()
    )


def test_without_a_report_objects_stay_sent_and_flush_says_why(tmp_path, orthanc: Orthanc, capsys):
    # No commitment port: Orthanc's report (on its own association) cannot reach us.
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[orthanc_destination(orthanc, commitment=True)],
        outbox={"wait_s": 3},
    )
    out = tmp_path / "exam"
    run(room, out)
    assert states(out) == ["sent"] * OBJECTS
    assert orthanc.count("instances") == OBJECTS
    capsys.readouterr()
    assert dicom_main(["dicom", "flush", str(out), "--timeout", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no storage commitment report yet" in err


@pytest.mark.parametrize("second", ["archive"])
def test_two_destinations_each_get_everything(tmp_path, orthanc: Orthanc, second, tmp_path_factory):
    other = Orthanc(tmp_path_factory.mktemp(second))
    other.start()
    try:
        room = dicom_room(
            tmp_path / "room.yaml",
            destinations=[orthanc_destination(orthanc), orthanc_destination(other)],
            outbox={"wait_s": 30},
        )
        out = tmp_path / "exam"
        run(room, out)
        uids = written_uids(out)
        assert sorted(orthanc.instance_uids()) == uids
        assert sorted(other.instance_uids()) == uids
    finally:
        other.stop()


def test_a_dicom_file_written_at_the_exam_s_end_is_sent_too(tmp_path, orthanc: Orthanc):
    """As the dose SR will be: written after the last image, without a capture event."""
    room = dicom_room(
        tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc)], outbox={"wait_s": 30}
    )
    out = tmp_path / "exam"
    extra: list[str] = []

    def write_at_the_end(line: Any) -> None:
        if line.kind == "exam_finished":
            ds = pydicom.dcmread(next(out.glob("001-*.dcm")))
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(out / "late-object.dcm")
            extra.append(str(ds.SOPInstanceUID))

    run(room, out, on_event=write_at_the_end)
    assert extra
    assert orthanc.count("instances") == OBJECTS + 1  # the exam's and the late one
    assert extra[0] in orthanc.instance_uids()
    assert "late-object.dcm" in [o["file"] for o in dicom_summary(out)["objects"]]


#: the journal line of the standard exam's third ``capture`` (the process dies right after it)
THIRD_CAPTURE_LINE = 166


def test_an_image_written_just_before_a_crash_is_sent_after_resume(tmp_path, orthanc: Orthanc):
    room = dicom_room(
        tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc)], outbox={"wait_s": 30}
    )
    out = tmp_path / "exam"
    crash = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler.cli",
            "run",
            "ivu-standard",
            "--room",
            str(room),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "FLUOROCTL_CRASH_AFTER_EVENT": str(THIRD_CAPTURE_LINE)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crash.returncode == -9, crash.stderr[-2000:]
    from scheduler.hospital.outbox import Outbox

    box = Outbox.in_folder(out, create=False)
    on_disk = {p.name for p in out.glob("*.dcm")}
    assert len(on_disk) == 3
    assert on_disk - set(box.files()) == {"003-film-5min.dcm"}, (
        "precondition: the crash must come between the third image's capture line and its queueing"
    )
    box.close()
    resumed = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "resume", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    uids = written_uids(out)
    assert len(uids) == OBJECTS
    assert sorted(orthanc.instance_uids()) == uids
