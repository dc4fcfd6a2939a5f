"""Hazard: a run that ended "completed" with missed films exited 0, and an interrupted run
left no summary.json; CI could not tell the outcomes apart.

0 all done · 3 completed with missed/failed steps · 1 aborted/faulted · 2 bad input ·
130 interrupted — and summary.json on every end, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..exam.conftest import ROOT

ACCELERATED = "configs/protocols/ivu-accelerated.yaml"


def fluoroctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_completed_with_a_missed_film_exits_3(tmp_path):
    out = tmp_path / "missed"
    proc = fluoroctl("run", ACCELERATED, "--out", str(out), "--fault", "generator*5@T+55s")
    assert proc.returncode == 3, proc.stderr[-2000:]
    s = summary(out)
    assert s["state"] == "completed"
    assert s["totals"]["missed"] == ["film-1min"]


def test_aborted_exits_1_with_a_summary(tmp_path):
    out = tmp_path / "aborted"
    proc = fluoroctl("run", ACCELERATED, "--out", str(out), "--fault", "carm.link_lost@T+30s")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert summary(out)["state"] in ("aborted", "faulted")


def test_interrupted_exits_130_and_still_writes_the_summary(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler.cli",
            "run",
            ACCELERATED,
            "--out",
            str(out),
            "--operator",
            "terminal",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = out / "events.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.exists() and '"kind":"prompt"' in journal.read_text()):
        assert time.monotonic() < deadline, "the exam never reached its first prompt"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    s = summary(out)
    assert s["state"] == "aborted" and s["interrupted"] is True
    assert s["abort_confirmations"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    assert "safe state confirmed by: injector, carm, table" in err
    assert "NOT confirmed" not in err
