"""Hazard: a film that exists on disk taken again after a restart (issue 10 item 3).

Every DICOM file in the exam folder whose step has no capture line is adopted — matched by
its own attributes (this exam's Study Instance UID, the SOP Instance UID this exam gives its
Instance Number, the Acquisition UID naming the protocol step), not by its file name — for
every step, not only the one in flight. A step whose images all exist is settled ("done",
"adopted from disk after a restart") and never acquired; a tomosynthesis series only partly
on disk is finished by the runner as in flight. Files that are not this exam's images are
left alone and reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydicom
import pytest

from scheduler.outputs import write_capture
from scheduler.recovery import ADOPTED_DETAIL, reconstruct
from tests.outputs.test_dicom import make_exam, make_record

from .exam_folders import (
    ROOT,
    cli,
    copy_exam,
    crash_exam,
    events,
    images,
    journal_lines,
    line_at,
    snapshot,
    write_journal,
)

#: film-7min's capture line: scout, film-1min, film-4min and film-7min are on disk
FILM_7MIN_CAPTURE = 352
#: film-1min's exposure reported, its capture line not yet written
FILM_1MIN_EXPOSED = 333


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = crash_exam(tmp_path_factory.mktemp("adopt") / "exam", FILM_7MIN_CAPTURE)
    assert line_at(out, FILM_7MIN_CAPTURE)["data"]["file"] == "004-film-7min.dcm"
    exposed = line_at(out, FILM_1MIN_EXPOSED)
    assert (exposed["kind"], exposed["step"]) == ("exposure", "film-1min")
    return out


@pytest.fixture
def lost_tail(crashed: Path, tmp_path: Path) -> Path:
    """The journal ends at film-1min's exposure; three films' images are on disk anyway."""
    exam = copy_exam(crashed, tmp_path / "exam")
    write_journal(exam, journal_lines(exam)[:FILM_1MIN_EXPOSED])
    return exam


def test_every_step_with_its_image_on_disk_is_adopted_not_retaken(lost_tail: Path) -> None:
    exam = lost_tail
    films = {n: (exam / n).read_bytes() for n in images(exam)}
    proc = cli("resume", str(exam))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = events(exam)
    exposures = [e["step"] for e in log if e["kind"] == "exposure"]
    assert exposures == ["scout", "film-1min", "prone"], "an existing film was exposed again"
    for name, data in films.items():
        assert (exam / name).read_bytes() == data
    summary = json.loads((exam / "summary.json").read_text())
    assert summary["state"] == "completed"
    adopted = ["002-film-1min.dcm", "003-film-4min.dcm", "004-film-7min.dcm"]
    assert summary["resumed"]["adopted_from_disk"] == adopted
    steps = {s["id"]: s for s in summary["steps"]}
    for sid in ("film-1min", "film-4min", "film-7min"):
        assert steps[sid]["status"] == "done"
        assert steps[sid]["detail"] == ADOPTED_DETAIL
        # The time point the image itself records: taken on time before the crash.
        late = steps[sid]["actual_after_injection_s"] - steps[sid]["planned_after_injection_s"]
        assert 0 <= late <= 1.0, steps[sid]
    assert steps["prone"]["files"] == ["005-prone.dcm"]
    listed = sorted(f for s in summary["steps"] for f in s["files"])
    assert listed == sorted(images(exam))


def test_the_image_names_its_step_not_the_file_name(lost_tail: Path) -> None:
    exam = lost_tail
    os.rename(exam / "003-film-4min.dcm", exam / "precious.dcm")
    os.rename(exam / "004-film-7min.dcm", exam / "009-prone.dcm")  # a misleading name
    rec = reconstruct(exam)
    assert rec.steps["film-4min"].files == ["precious.dcm"]
    assert rec.steps["film-4min"].detail == ADOPTED_DETAIL
    assert rec.steps["film-7min"].files == ["009-prone.dcm"]
    assert rec.steps["prone"].status == "pending" and rec.steps["prone"].files == []
    assert rec.instance >= 9, "a new image could be numbered onto an existing name"


def test_an_image_of_another_study_is_not_adopted(lost_tail: Path) -> None:
    exam = lost_tail
    os.unlink(exam / "004-film-7min.dcm")
    stranger = write_capture(make_record(instance=4), make_exam(), exam / "elsewhere")
    os.rename(stranger, exam / "004-film-7min.dcm")
    (exam / "elsewhere").rmdir()
    before = snapshot(exam)
    rec = reconstruct(exam)
    assert rec.steps["film-7min"].status == "pending" and rec.steps["film-7min"].files == []
    (ignored,) = rec.ignored
    assert ignored.file == "004-film-7min.dcm"
    assert "another study" in ignored.reason
    assert snapshot(exam) == before


def test_an_image_whose_identity_does_not_add_up_is_not_adopted(lost_tail: Path) -> None:
    """This study's UID copied into a file whose SOP Instance UID this exam never made."""
    exam = lost_tail
    path = exam / "004-film-7min.dcm"
    ds = pydicom.dcmread(path)
    ds.InstanceNumber = 7  # the SOP Instance UID was derived from instance 4
    ds.save_as(path)
    rec = reconstruct(exam)
    assert rec.steps["film-7min"].status == "pending"
    assert [(i.file, "SOP Instance UID" in i.reason) for i in rec.ignored] == [
        ("004-film-7min.dcm", True)
    ]


def test_a_copy_of_a_listed_image_is_not_a_second_film(crashed: Path, tmp_path: Path) -> None:
    exam = copy_exam(crashed, tmp_path / "exam")
    (exam / "copy of scout.dcm").write_bytes((exam / "001-scout.dcm").read_bytes())
    rec = reconstruct(exam)
    assert rec.steps["scout"].files == ["001-scout.dcm"]
    assert [(i.file, i.reason) for i in rec.ignored] == [
        ("copy of scout.dcm", "a copy of 001-scout.dcm (same SOP Instance UID)")
    ]


# -- tomosynthesis: a series is one acquisition of several images ---------------------------

TOMO_PROTOCOL = ROOT / "configs/protocols/ivu-nephrotomography.yaml"
#: the plain tomogram's last layer's capture line (the three layers are on disk)
PLAIN_TOMO_LAST_CAPTURE = 23


@pytest.fixture(scope="module")
def tomo_crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = crash_exam(
        tmp_path_factory.mktemp("tomo") / "exam", PLAIN_TOMO_LAST_CAPTURE, TOMO_PROTOCOL
    )
    last = line_at(out, PLAIN_TOMO_LAST_CAPTURE)
    assert last["data"]["file"] == "004-plain-tomo-100mm.dcm"
    return out


def test_a_complete_tomo_series_on_disk_is_settled(tomo_crashed: Path, tmp_path: Path) -> None:
    exam = copy_exam(tomo_crashed, tmp_path / "exam")
    lines = journal_lines(exam)
    write_journal(exam, lines[: PLAIN_TOMO_LAST_CAPTURE - 2])  # two capture lines lost
    rec = reconstruct(exam)
    step = rec.steps["plain-tomo"]
    assert step.status == "done" and step.detail == ADOPTED_DETAIL
    assert step.files == [
        "002-plain-tomo-80mm.dcm",
        "003-plain-tomo-90mm.dcm",
        "004-plain-tomo-100mm.dcm",
    ]
    assert rec.in_flight is None
    assert rec.adopted == ["003-plain-tomo-90mm.dcm", "004-plain-tomo-100mm.dcm"]


def test_a_partial_tomo_series_goes_to_the_in_flight_path(
    tomo_crashed: Path, tmp_path: Path
) -> None:
    exam = copy_exam(tomo_crashed, tmp_path / "exam")
    lines = journal_lines(exam)
    write_journal(exam, lines[: PLAIN_TOMO_LAST_CAPTURE - 2])
    os.unlink(exam / "004-plain-tomo-100mm.dcm")  # the crash came before the third layer
    rec = reconstruct(exam)
    assert rec.steps["plain-tomo"].status == "pending"
    assert rec.in_flight is not None and rec.in_flight.step == "plain-tomo"
    assert rec.in_flight.files == ["002-plain-tomo-80mm.dcm", "003-plain-tomo-90mm.dcm"]
    assert rec.in_flight.commanded == ["tomo"]  # the runner recovers, never re-fires


def test_layers_are_counted_by_their_own_height_not_their_names(
    tomo_crashed: Path, tmp_path: Path
) -> None:
    """No capture line for any layer, two of them swapped by name: still three layers."""
    exam = copy_exam(tomo_crashed, tmp_path / "exam")
    write_journal(exam, journal_lines(exam)[: PLAIN_TOMO_LAST_CAPTURE - 3])
    a, b = exam / "002-plain-tomo-80mm.dcm", exam / "003-plain-tomo-90mm.dcm"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    rec = reconstruct(exam)
    assert rec.steps["plain-tomo"].status == "done"
    heights = {
        float(pydicom.dcmread(exam / f, stop_before_pixels=True).TomoLayerHeight)
        for f in rec.steps["plain-tomo"].files
    }
    assert heights == {80.0, 90.0, 100.0}
    assert rec.steps["plain-tomo"].settled_on_resume is True
