"""Hazard: `resume` continuing an exam that already ended (issue 10, data integrity: "resume
of such an exam refuses to continue an aborted exam").

An exam whose journal holds ``exam_finished`` — completed, aborted or faulted — is refused
with exit 2 and one line giving its final state and the reason it ended; the folder is left
byte-identical (not even a torn last line is cut, no lock file is created).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .exam_folders import (
    JOURNAL,
    PROTOCOL,
    ROOT,
    cli,
    copy_exam,
    events,
    journal_lines,
    one_error_line,
    snapshot,
)


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("completed") / "exam"
    proc = cli("run", str(PROTOCOL), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_a_completed_exam_is_not_resumed(completed: Path, tmp_path: Path) -> None:
    exam = copy_exam(completed, tmp_path / "exam")
    (exam / JOURNAL).write_bytes((exam / JOURNAL).read_bytes() + b'{"seq": 999, "t_')
    before = snapshot(exam)
    message = one_error_line(cli("resume", str(exam)))
    assert "already ended (completed)" in message
    assert snapshot(exam) == before  # every file, so a new lock file would show too


def test_an_aborted_exam_is_not_resumed_and_the_message_says_why(tmp_path: Path) -> None:
    out = tmp_path / "exam"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "run", str(PROTOCOL), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / JOURNAL).exists() or len(journal_lines(out)) < 30:
            assert proc.poll() is None, "the run ended before the interrupt"
            assert time.monotonic() < deadline, "the exam did not get going within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (finished,) = [e for e in events(out) if e["kind"] == "exam_finished"]
    assert finished["data"]["state"] == "aborted"
    before = snapshot(out)
    message = one_error_line(cli("resume", str(out)))
    assert f"already ended (aborted: {finished['data']['reason']})" in message
    assert "cancelled by the operator" in message
    assert snapshot(out) == before
