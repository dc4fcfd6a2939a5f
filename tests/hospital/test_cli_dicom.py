"""``fluoroctl dicom status|flush``: what they show, what they send, how they refuse.

One exam is run once (no DICOM peers in its room) and copied for each test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

import fluoroctl
from scheduler.cli_dicom import main
from scheduler.hospital.lock import SenderLock

from .conftest import Orthanc, dicom_room, free_port, orthanc_destination

pytestmark = pytest.mark.peers  # real DICOM peers, started per test on free ports; virtual-time exams, so they run with the parallel tests


@pytest.fixture(scope="module")
def plain_exam(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "exam"
    fluoroctl.run_exam("ivu-standard", out=out)
    return out


@pytest.fixture
def exam(plain_exam: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "exam"
    shutil.copytree(plain_exam, copy)
    return copy


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def add_object(exam: Path, name: str) -> str:
    """Another object of the same study (as the dose SR will be); returns its UID."""
    ds = pydicom.dcmread(next(exam.glob("001-*.dcm")))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(exam / name)
    return str(ds.SOPInstanceUID)


def test_status_of_a_folder_without_an_outbox_says_how_to_send_it(exam, capsys):
    assert main(["dicom", "status", str(exam)]) == 0
    out = capsys.readouterr().out
    assert "8 DICOM file(s), no outbox" in out
    assert f"fluoroctl dicom flush {exam} --room ROOM" in out


@pytest.mark.parametrize("command", ["status", "flush"])
def test_a_folder_that_is_not_an_exam_is_refused_in_one_line(tmp_path, capsys, command):
    assert main(["dicom", command, str(tmp_path / "nowhere")]) == 2
    assert "no such exam folder" in one_line_error(capsys)
    assert main(["dicom", command, str(tmp_path)]) == 2
    assert "not an exam folder" in one_line_error(capsys)


def test_flush_without_destinations_is_refused_in_one_line(exam, capsys):
    assert main(["dicom", "flush", str(exam)]) == 2
    assert "no dicom destinations" in one_line_error(capsys)
    assert not (exam / "dicom-outbox.sqlite").exists()


def test_flush_with_a_bad_room_file_is_refused_in_one_line(exam, tmp_path, capsys):
    bad = dicom_room(tmp_path / "bad.yaml", destinations=[{"ae": "PACS", "host": "h", "port": 0}])
    assert main(["dicom", "flush", str(exam), "--room", str(bad)]) == 2
    err = one_line_error(capsys)
    assert "bad.yaml" in err and "port" in err


def test_flush_with_a_negative_timeout_is_refused(exam, tmp_path, capsys):
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[{"ae": "PACS", "host": "127.0.0.1", "port": free_port()}],
    )
    assert main(["dicom", "flush", str(exam), "--room", str(room), "--timeout", "-1"]) == 2
    assert "--timeout" in one_line_error(capsys)


def test_flush_room_sends_an_exam_run_without_pacs(exam, tmp_path, orthanc: Orthanc, capsys):
    room = dicom_room(tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc)])
    assert main(["dicom", "flush", str(exam), "--room", str(room), "--timeout", "60"]) == 0
    assert "all 8 object(s) delivered" in capsys.readouterr().out
    files = sorted(
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in exam.glob("*.dcm")
    )
    assert sorted(orthanc.instance_uids()) == files
    # A second flush has nothing to do and sends nothing again.
    assert main(["dicom", "flush", str(exam), "--timeout", "10"]) == 0
    status = json_status(exam, capsys)
    assert all(d["attempts"] == 1 for o in status["objects"] for d in o["destinations"].values())


def json_status(exam: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["dicom", "status", str(exam), "--json"]) == 0
    result: dict = json.loads(capsys.readouterr().out)
    return result


def test_pacs_down_flush_fails_in_one_line_and_status_shows_the_error(
    exam, tmp_path, orthanc_stopped: Orthanc, capsys
):
    room = dicom_room(tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc_stopped)])
    assert main(["dicom", "flush", str(exam), "--room", str(room), "--timeout", "0.5"]) == 1
    err = one_line_error(capsys)
    assert "8 deliveries not done" in err and "cannot connect" in err
    assert main(["dicom", "status", str(exam)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.endswith(")") and ".dcm" in line]
    assert len(rows) == 8 and all("queued" in r and "cannot connect" in r for r in rows)
    assert "next try" in rows[0]
    assert lines[-1].endswith("8 undelivered")


def test_a_file_added_to_the_folder_is_shown_then_sent_by_flush(
    exam, tmp_path, orthanc: Orthanc, capsys
):
    room = dicom_room(tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc)])
    assert main(["dicom", "flush", str(exam), "--room", str(room), "--timeout", "60"]) == 0
    uid = add_object(exam, "late-object.dcm")
    capsys.readouterr()
    assert main(["dicom", "status", str(exam)]) == 0
    assert any(
        line.startswith("late-object.dcm") and "written" in line and "not queued" in line
        for line in capsys.readouterr().out.splitlines()
    )
    assert main(["dicom", "flush", str(exam), "--timeout", "60"]) == 0
    assert uid in orthanc.instance_uids()
    assert orthanc.count("instances") == 9  # 7 images, the dose SR, the late object


def test_another_study_s_file_in_the_folder_is_not_sent(exam, tmp_path, orthanc: Orthanc):
    ds = pydicom.dcmread(next(exam.glob("001-*.dcm")))
    ds.StudyInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(exam / "999-stray.dcm")
    room = dicom_room(tmp_path / "room.yaml", destinations=[orthanc_destination(orthanc)])
    assert main(["dicom", "flush", str(exam), "--room", str(room), "--timeout", "60"]) == 0
    assert orthanc.count("studies") == 1
    assert (
        orthanc.count("instances") == 8
    )  # the exam's own (7 images, the dose SR), from its journal's study UID


def test_flush_refuses_while_another_process_sends_the_folder(exam, tmp_path, capsys):
    room = dicom_room(
        tmp_path / "room.yaml",
        destinations=[{"ae": "PACS", "host": "127.0.0.1", "port": free_port()}],
    )
    holder = SenderLock(exam)
    assert holder.acquire()
    try:
        # In-process the flock is per open file: a second open file description conflicts.
        assert main(["dicom", "flush", str(exam), "--room", str(room)]) == 1
        assert "is sending this exam" in one_line_error(capsys)
    finally:
        holder.release()
