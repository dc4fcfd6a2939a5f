"""Hazard: a full disk or an unwritable exam folder during the exam.

The exam aborts into the safe state with a one-line reason; every image already stored
stays whole and listed; no journal line is torn; no exposure is made whose image could not
be stored (free space is checked before the exam and before each acquisition).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from drivers import VirtualTimeEventLoop
from scheduler.compose import run_exam
from scheduler.exam import store as exam_store

from ..exam.conftest import ROOT, WALL_ANCHOR

ACCELERATED = ROOT / "configs/protocols/ivu-accelerated.yaml"
SIM_ROOM = ROOT / "configs/rooms/simulator.yaml"


def run_in_process(out: Path):  # type: ignore[no-untyped-def]
    loop = VirtualTimeEventLoop()
    try:
        return loop.run_until_complete(
            run_exam(ACCELERATED, SIM_ROOM, out, wall_anchor=WALL_ANCHOR)
        )
    finally:
        loop.close()


def check_record_whole(out: Path) -> list[dict]:
    """Every journal line parses, seq runs 1..N, the record is closed; every image is
    readable and listed by a capture line."""
    raw = (out / "events.jsonl").read_bytes()
    assert raw.endswith(b"\n"), "torn last line"
    events = [json.loads(line) for line in raw.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "exam_finished"
    listed = {e["data"]["file"] for e in events if e["kind"] == "capture"}
    on_disk = {p.name for p in out.glob("[0-9][0-9][0-9]-*.dcm")}
    assert on_disk == listed
    for name in on_disk:
        assert pydicom.dcmread(out / name).pixel_array.size > 0
    return events


def test_an_image_that_cannot_be_written_aborts_the_exam_safely(tmp_path, monkeypatch):
    real = exam_store.write_capture
    calls = {"n": 0}

    def full_on_third(record, exam, directory, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        return real(record, exam, directory, **kwargs)

    monkeypatch.setattr(exam_store, "write_capture", full_on_third)
    out = tmp_path / "exam"
    outcome = run_in_process(out)
    result = outcome.result
    assert result.state == "aborted"
    assert result.reason.startswith("storage: ") and "No space left" in result.reason
    assert result.abort_confirmations == {"injector": "safe", "carm": "safe", "table": "safe"}
    events = check_record_whole(out)
    failed = [e for e in events if e["kind"] == "capture_failed"]
    assert failed and "could not be stored" in failed[-1]["data"]["reason"]
    assert len(list(out.glob("[0-9][0-9][0-9]-*.dcm"))) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "aborted"
    assert summary["totals"]["contrast_delivered_ml"] > 0


def test_a_journal_write_cut_short_by_a_full_disk_leaves_no_torn_line(tmp_path, monkeypatch):
    """The journal's line is cut back, its reserve given up, the line written whole; the next
    acquisition is refused (the disk is full) and the exam aborts."""
    real_write = os.write
    state = {"captures": 0, "short": 0}

    def write(fd: int, data: bytes) -> int:  # type: ignore[override]
        is_journal = os.readlink(f"/proc/self/fd/{fd}").endswith("events.jsonl")
        if is_journal and b'"kind":"capture"' in data:
            state["captures"] += 1
        if is_journal and state["captures"] >= 2 and state["short"] == 0:
            state["short"] += 1
            return real_write(fd, data[: len(data) // 2])  # the disk filled mid-line
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    out = tmp_path / "exam"
    outcome = run_in_process(out)
    monkeypatch.undo()
    assert state["short"] == 1
    assert outcome.result.state == "aborted"
    assert "full" in outcome.result.reason
    check_record_whole(out)
    assert not (out / "events.jsonl.reserve").exists()


# -- a real, small file system ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """``small_disk(mib)``: a tmpfs of that size mounted in the test's folder (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounted: list[Path] = []

    def make(mib: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)], check=True
        )
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fluoroctl_run(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "run", str(ACCELERATED), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_exam_that_cannot_be_stored_is_refused_before_any_exposure(small_disk):
    out = small_disk(8) / "exam"  # the accelerated exam needs about 18 MiB
    proc = fluoroctl_run(out)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "not enough free space" in proc.stderr
    events = check_record_whole(out)
    commands = [e["data"]["command"] for e in events if e["kind"] == "command"]
    assert commands == []  # nothing armed, moved or exposed
    assert not list(out.glob("*.dcm"))


def test_the_disk_filling_up_mid_exam_ends_it_safely_and_keeps_every_image(small_disk):
    disk = small_disk(64)
    out = disk / "exam"
    stop = threading.Event()

    def fill_after_the_scout() -> None:
        while not stop.is_set():
            if list(out.glob("001-*.dcm")):
                filler = disk / "filler"
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                with filler.open("wb") as f:
                    os.posix_fallocate(f.fileno(), 0, max(free - 256 * 1024, 1))
                return
            time.sleep(0.005)

    thread = threading.Thread(target=fill_after_the_scout)
    thread.start()
    try:
        proc = fluoroctl_run(out)
    finally:
        stop.set()
        thread.join()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    events = check_record_whole(out)
    finished = events[-1]["data"]
    assert finished["state"] == "aborted" and "storage" in finished["reason"]
    abort = next(e for e in events if e["kind"] == "abort")
    assert abort["data"]["confirmed"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    assert (out / "001-scout.dcm").exists()
    assert json.loads((out / "summary.json").read_text())["state"] == "aborted"
