"""Hazard: a stray file in the exam folder stops `resume` or is taken for a film (issue 10,
data integrity: "a stray NNN-*.dcm or any unknown file never stops summary.json").

Resume used to read every ``NNN-*.dcm`` with pydicom for the contact sheet (a non-DICOM
file crashed it before summary.json was written; a FIFO hung it) and adopted a file as a
film by its name alone. Now a stray file is left exactly as it is, never adopted, reported
in summary.json (``resumed.ignored_files``) with the reason, and new images are numbered
past every name in the folder so none can collide with it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from scheduler.outputs import write_capture
from scheduler.protocol import CaptureStep, load_protocol
from scheduler.resume import write_sheet_from_disk
from tests.outputs.test_dicom import make_exam, make_record

from .exam_folders import PROTOCOL, cli, crash_exam, events, snapshot

N = 200  # the scout taken, the injection running


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    return crash_exam(tmp_path / "exam", N)


def add_strays(exam: Path) -> dict[str, str]:
    """Stray files of every kind; returns name → the word its reason must contain."""
    (exam / "009-film-4min.dcm").write_bytes(b"not DICOM at all, just a film's name")
    stranger = write_capture(make_record(instance=10), make_exam(), exam / "tmp-other")
    shutil.move(stranger, exam / "010-film-7min.dcm")
    (exam / "tmp-other").rmdir()
    (exam / "notes.txt").write_text("the technologist's notes\n")
    (exam / "extra").mkdir()
    (exam / "extra" / "x.dcm").write_bytes(b"inside a subfolder")
    os.mkfifo(exam / "011-film-1min.dcm")  # reading it would block forever
    (exam / "012-link.dcm").symlink_to(exam / "010-film-7min.dcm")
    return {
        "009-film-4min.dcm": "unreadable",
        "010-film-7min.dcm": "another study",
        "notes.txt": "not a file of this exam",
        "extra": "not a file of this exam",
        "011-film-1min.dcm": "not a regular file",
        "012-link.dcm": "not a regular file",
    }


def test_stray_files_never_stop_the_resume_and_are_left_alone(crashed: Path) -> None:
    exam = crashed
    strays = add_strays(exam)
    before = snapshot(exam)
    proc = cli("resume", str(exam), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((exam / "summary.json").read_text())
    assert summary["state"] == "completed"
    assert (exam / "contact-sheet.png").stat().st_size > 0
    after = snapshot(exam)
    for name, data in before.items():
        if name.split("/")[0] in strays:
            assert after[name] == data, f"stray file {name} was changed"
    assert (exam / "011-film-1min.dcm").is_fifo()
    assert (exam / "012-link.dcm").is_symlink()
    reported = {i["file"]: i["reason"] for i in summary["resumed"]["ignored_files"]}
    assert set(reported) == set(strays)
    for name, word in strays.items():
        assert word in reported[name], (name, reported[name])
    listed = {f for s in summary["steps"] for f in s["files"]}
    assert not listed & set(strays), "a stray file was taken for a film"
    # Every capture of the protocol was taken once, in files of its own.
    exposed = [e["step"] for e in events(exam) if e["kind"] == "exposure"]
    captures = [s.id for s in load_protocol(PROTOCOL).steps if isinstance(s, CaptureStep)]
    assert sorted(exposed) == sorted(captures)
    new = sorted(listed - {"001-scout.dcm"})
    assert all(int(name[:3]) > 12 for name in new), new


def test_the_contact_sheet_skips_what_it_cannot_read(crashed: Path) -> None:
    exam = crashed
    (exam / "002-film-1min.dcm").write_bytes(b"garbage")
    write_sheet_from_disk(exam, "header")  # every NNN-*.dcm, as before: must not raise
    assert (exam / "contact-sheet.png").stat().st_size > 0
