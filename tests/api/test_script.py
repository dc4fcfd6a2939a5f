"""fluoroctl from a plain script: a new process that only imports fluoroctl.

Issue 11: ``asyncio.run(run_exam(...))`` failed ("room asks for virtual time but the loop is
not a VirtualTimeEventLoop"); ``fluoroctl.run_exam`` makes the loop the room needs itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import checkout_env, run_script

SCRIPT = """\
import json
import sys

import fluoroctl

outcome = fluoroctl.run_exam("ivu-accelerated", out=sys.argv[1])
print(json.dumps({
    "state": outcome.state,
    "exit_code": outcome.exit_code,
    "images": [str(p) for p in outcome.images],
    "film": outcome.step("film-1min").actual_after_injection_s,
    "contrast": outcome.contrast_delivered_ml,
}))
sys.exit(outcome.exit_code)
"""


def test_a_plain_script_runs_a_whole_exam(tmp_path):
    proc = run_script(tmp_path, SCRIPT, "exam")
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    out = tmp_path / "exam"  # relative to the script's own working directory
    summary = json.loads((out / "summary.json").read_text())
    assert printed["state"] == summary["state"] == "completed"
    assert printed["exit_code"] == 0
    on_disk = sorted(str(p) for p in out.glob("[0-9][0-9][0-9]-*.dcm"))
    assert printed["images"] == on_disk and len(on_disk) == summary["totals"]["images"] == 5
    assert printed["film"] == pytest.approx(60.0, abs=0.05)
    assert printed["contrast"] == summary["totals"]["contrast_delivered_ml"]


#: waits at the first prompt (the injection confirmation) for a person who never answers
WAITING = """\
import sys

import fluoroctl

try:
    fluoroctl.run_exam("ivu-accelerated", out=sys.argv[1], operator="terminal")
except KeyboardInterrupt as exc:
    print(f"interrupted: {exc}")
    sys.exit(130)
"""


def journal_kinds(out: Path) -> list[str]:
    """The kinds of the journal's complete lines so far."""
    journal = out / "events.jsonl"
    if not journal.exists():
        return []
    lines = journal.read_text().split("\n")[:-1]  # the last may be half-written
    return [json.loads(line)["kind"] for line in lines]


def start_waiting(folder: Path, out: Path) -> subprocess.Popen[str]:
    """A script whose exam waits at its first prompt; returns once the prompt is journaled."""
    script = folder / "waiting.py"
    script.write_text(WAITING, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        cwd=folder,
        env=checkout_env(),
        stdin=subprocess.PIPE,  # open and silent: the operator is thinking
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "prompt" in journal_kinds(out):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the exam never reached its prompt: {proc.communicate()[1][-3000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_aborts_the_scripts_exam_into_the_safe_state(tmp_path, sig):
    out = tmp_path / "exam"
    proc = start_waiting(tmp_path, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert stdout.startswith("interrupted: exam interrupted: aborted into the safe state")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "aborted" and summary["interrupted"] is True
    assert summary["abort_confirmations"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    assert [s["status"] for s in summary["steps"]][:1] == ["done"]  # the scout is kept


RESUME = """\
import sys

import fluoroctl

outcome = fluoroctl.resume_exam(sys.argv[1], operator="scripted")
print(outcome.state, outcome.exit_code, " ".join(p.name for p in outcome.images))
"""


def test_a_script_resumes_an_exam_whose_process_was_killed(tmp_path):
    out = tmp_path / "exam"
    proc = start_waiting(tmp_path, out)
    proc.kill()  # SIGKILL: no clean-up at all, as in a power cut of the control PC
    proc.communicate(timeout=60)
    assert not (out / "summary.json").exists()
    done = run_script(tmp_path, RESUME, str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    state, code, *images = done.stdout.split()
    assert (state, code) == ("completed", "0")
    assert images == sorted(p.name for p in out.glob("[0-9][0-9][0-9]-*.dcm"))
    assert images[0] == "001-scout.dcm"  # acquired before the kill, adopted, not retaken
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"]["resumes"] == 1
