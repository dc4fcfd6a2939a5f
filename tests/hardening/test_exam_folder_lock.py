"""Hazard: two controllers on one exam folder (issue 10 item 4).

Two `run`s or two `resume`s on one folder used to both drive the room (double exposures, an
interleaved journal). Now one process holds an exclusive ``flock`` on ``DIR/.fluoroctl.lock``
for the exam's life; the next gets exit 2 "exam folder DIR in use by PID N" and changes
nothing. `run` into a folder that already holds an exam is refused unless ``--force-new``,
which moves the old folder aside whole; nothing is deleted or overwritten.

The `run` cases need `compose.run_exam` to claim the folder and `run --force-new` (wired by
the CLI's owner); the `resume` cases and the module's own behaviour are complete here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.exam_dir import (
    LOCK_FILE,
    ExamFolderBusy,
    ExamFolderError,
    claim_new_exam_folder,
    lock_exam_folder,
    probe_exam_folder,
)

from .exam_folders import (
    JOURNAL,
    PROTOCOL,
    ROOT,
    cli,
    copy_exam,
    crash_exam,
    events,
    journal_lines,
    one_error_line,
    snapshot,
)

HOLDER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from scheduler.exam_dir import lock_exam_folder\n"
    "lock = lock_exam_folder(Path(sys.argv[1]))\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of ``tmp_path / 'exam'``."""
    folder = tmp_path / "exam"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def without_lock(files: dict[str, bytes]) -> dict[str, bytes]:
    """The exam's content: claiming a folder adds its lock file, and changes nothing else."""
    return {k: v for k, v in files.items() if k != LOCK_FILE}


# -- the lock itself ---------------------------------------------------------------------------


def test_a_second_lock_is_refused_with_the_holders_pid(holder: subprocess.Popen[str]) -> None:
    folder = Path(holder.args[-1])  # type: ignore[index]
    with pytest.raises(ExamFolderBusy, match=f"exam folder {folder} in use by PID {holder.pid}$"):
        lock_exam_folder(folder)
    with pytest.raises(ExamFolderBusy) as caught:
        claim_new_exam_folder(folder)
    assert caught.value.pid == holder.pid
    with pytest.raises(ExamFolderBusy):
        probe_exam_folder(folder)


def test_the_lock_dies_with_its_process(holder: subprocess.Popen[str]) -> None:
    folder = Path(holder.args[-1])  # type: ignore[index]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with lock_exam_folder(folder) as lock:
        assert lock.held
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert not lock.held


def test_two_locks_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    first = claim_new_exam_folder(tmp_path / "exam")
    with pytest.raises(ExamFolderBusy, match=f"in use by PID {os.getpid()}"):
        lock_exam_folder(tmp_path / "exam")
    first.release()
    first.release()  # idempotent
    lock_exam_folder(tmp_path / "exam").release()


def test_probing_a_folder_never_locked_creates_nothing(tmp_path: Path) -> None:
    probe_exam_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- claiming a folder for a new exam ----------------------------------------------------------


def test_a_new_folder_is_created_and_locked(tmp_path: Path) -> None:
    with claim_new_exam_folder(tmp_path / "a" / "b") as lock:
        assert lock.path == tmp_path / "a" / "b"
        assert [p.name for p in lock.path.iterdir()] == [LOCK_FILE]


def test_a_folder_with_unrelated_files_may_take_an_exam(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("exam folders go here\n")
    claim_new_exam_folder(tmp_path).release()
    assert (tmp_path / "README.txt").read_text() == "exam folders go here\n"


@pytest.mark.parametrize("marker", [JOURNAL, "summary.json", "001-scout.dcm"])
def test_a_folder_holding_an_exam_is_refused(tmp_path: Path, marker: str) -> None:
    folder = tmp_path / "exam"
    folder.mkdir()
    (folder / marker).write_bytes(b"the previous exam's")
    before = snapshot(folder)
    with pytest.raises(ExamFolderError, match=f"already holds an exam .*{marker}.*--force-new"):
        claim_new_exam_folder(folder)
    assert without_lock(snapshot(folder)) == before
    lock_exam_folder(folder).release()  # the refusal let the lock go


def test_force_new_moves_the_old_exam_aside_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    folder.mkdir()
    (folder / JOURNAL).write_bytes(b"first\n")
    (folder / "001-scout.dcm").write_bytes(b"first image")
    first = snapshot(folder)
    with claim_new_exam_folder(folder, force_new=True) as lock:
        moved = lock.moved_aside
        assert moved is not None and moved.parent == tmp_path
        assert moved.name.startswith("exam.old-")
        assert without_lock(snapshot(moved)) == first
        assert [p.name for p in folder.iterdir()] == [LOCK_FILE]
        (folder / JOURNAL).write_bytes(b"second\n")
    with claim_new_exam_folder(folder, force_new=True) as lock:
        again = lock.moved_aside
        assert again is not None and again != moved, "a moved exam was renamed over"
        assert (again / JOURNAL).read_bytes() == b"second\n"
    assert without_lock(snapshot(moved)) == first


def test_force_new_never_moves_a_folder_in_use(holder: subprocess.Popen[str]) -> None:
    folder = Path(holder.args[-1])  # type: ignore[index]
    (folder / JOURNAL).write_bytes(b"live\n")
    with pytest.raises(ExamFolderBusy):
        claim_new_exam_folder(folder, force_new=True)
    assert (folder / JOURNAL).read_bytes() == b"live\n"
    assert [p.name for p in folder.parent.iterdir()] == ["exam"]


def test_unusable_paths_are_refused_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ExamFolderError, match="exists and is not a folder"):
        claim_new_exam_folder(a_file)
    with pytest.raises(ExamFolderError, match="cannot be created: Not a directory"):
        claim_new_exam_folder(a_file / "exam")
    with pytest.raises(ExamFolderError, match="does not exist"):
        lock_exam_folder(tmp_path / "missing")
    assert a_file.read_text() == "x"
    # Root may write anywhere; a read-only folder is what os.access reports for others.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ExamFolderError, match="is not writable") as caught:
        claim_new_exam_folder(tmp_path / "ro")
    assert "\n" not in str(caught.value)


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Killed before the injection was confirmed: the next prompt is the confirmation."""
    return crash_exam(tmp_path_factory.mktemp("lock") / "exam", 12)


def test_resume_of_a_folder_in_use_is_refused(crashed: Path, tmp_path: Path) -> None:
    exam = copy_exam(crashed, tmp_path / "exam")
    with lock_exam_folder(exam):
        before = snapshot(exam)
        message = one_error_line(cli("resume", str(exam)))
        assert message == f"error: exam folder {exam} in use by PID {os.getpid()}"
        assert snapshot(exam) == before


def start_blocked(args: list[str], out: Path, after: int) -> subprocess.Popen[str]:
    """Start a CLI exam that stops at its injection prompt (nobody answers the terminal)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", *args, "--operator", "terminal"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        log = events(out) if (out / JOURNAL).exists() else []
        if [e for e in log[after:] if e["kind"] == "prompt"]:
            return proc
        assert proc.poll() is None, "the exam ended before its prompt"
        assert time.monotonic() < deadline, "the exam did not reach its prompt within 60 s"
        time.sleep(0.02)


def stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # the prompt reads end of input: the exam aborts into safe state
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_resumes_one_controller(crashed: Path, tmp_path: Path) -> None:
    exam = copy_exam(crashed, tmp_path / "exam")
    first = start_blocked(["resume", str(exam)], exam, after=len(journal_lines(exam)))
    try:
        journal = (exam / JOURNAL).read_bytes()
        message = one_error_line(cli("resume", str(exam)))
        assert message == f"error: exam folder {exam} in use by PID {first.pid}"
        assert (exam / JOURNAL).read_bytes() == journal, "the second resume wrote the journal"
    finally:
        stop(first)
    assert len([e for e in events(exam) if e["kind"] == "exam_resumed"]) == 1


def test_a_second_run_or_resume_on_a_running_exam_is_refused(tmp_path: Path) -> None:
    """Waits for the wiring: compose.run_exam claims the folder before any device opens."""
    exam = tmp_path / "exam"
    first = start_blocked(["run", str(PROTOCOL), "--out", str(exam)], exam, after=0)
    try:
        journal = (exam / JOURNAL).read_bytes()
        for args in (["run", str(PROTOCOL), "--out", str(exam)], ["resume", str(exam)]):
            message = one_error_line(cli(*args))
            assert message == f"error: exam folder {exam} in use by PID {first.pid}", args
        assert (exam / JOURNAL).read_bytes() == journal
        assert sorted(p.name for p in exam.glob("[0-9][0-9][0-9]-*.dcm")) == ["001-scout.dcm"]
    finally:
        stop(first)


def test_run_into_a_folder_holding_an_exam_needs_force_new(crashed: Path, tmp_path: Path) -> None:
    """Waits for the wiring: `run --force-new`, and run_exam claiming the folder."""
    exam = copy_exam(crashed, tmp_path / "exam")
    before = without_lock(snapshot(exam))
    message = one_error_line(cli("run", str(PROTOCOL), "--out", str(exam)))
    assert "already holds an exam" in message and "--force-new" in message
    assert without_lock(snapshot(exam)) == before
    proc = cli("run", str(PROTOCOL), "--out", str(exam), "--force-new")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (moved,) = tmp_path.glob("exam.old-*")
    assert without_lock(snapshot(moved)) == before
    summary = json.loads((exam / "summary.json").read_text())
    assert summary["state"] == "completed"
    assert len(list(exam.glob("[0-9][0-9][0-9]-*.dcm"))) == 5
