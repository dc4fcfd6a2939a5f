"""`fluoroctl run` as a user runs it: a subprocess, prompts on stdin or scripted."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def fluoroctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
        timeout=300,
    )


def run_with_terminal_operator(out, stdin: str) -> subprocess.CompletedProcess[str]:
    """The accelerated protocol with prompts answered from ``stdin``."""
    return fluoroctl(
        "run",
        "configs/protocols/ivu-accelerated.yaml",
        "--out",
        str(out),
        "--operator",
        "terminal",
        stdin=stdin,
    )


def test_run_shows_progress_and_writes_outputs(tmp_path):
    out = tmp_path / "acc"
    proc = fluoroctl("run", "configs/protocols/ivu-accelerated.yaml", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    log = proc.stderr
    assert "injection started (injector-confirmed)" in log
    assert log.count("captured ") == 5
    assert "lateness +0.0 ms" in log
    assert "Exam completed" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed"
    assert len(list(out.glob("[0-9][0-9][0-9]-*.dcm"))) == 5


def test_terminal_operator_answers_prompts_from_stdin(tmp_path):
    out = tmp_path / "term"
    # two prompts in this protocol: confirm the injection, turn the patient prone
    proc = run_with_terminal_operator(out, stdin="start\ny\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("type start to confirm, cancel or n or no to decline") == 1
    assert proc.stderr.count("type y or yes to confirm, n or no to decline") == 1
    assert json.loads((out / "summary.json").read_text())["state"] == "completed"


def test_declined_injection_aborts_safely_and_keeps_the_scout(tmp_path):
    out = tmp_path / "declined"
    proc = run_with_terminal_operator(out, stdin="n\n")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert "interlock_refused" in kinds
    assert "injection_started" not in kinds
    assert not [
        e
        for e in events
        if e["kind"] == "command" and e["data"].get("command") == "start_injection"
    ]
    abort = next(e for e in events if e["kind"] == "abort")
    assert abort["data"]["confirmed"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "aborted"
    assert [s["status"] for s in summary["steps"]][:2] == ["done", "failed"]
    assert (out / "001-scout.dcm").exists()  # nothing acquired is lost
    assert (out / "contact-sheet.png").exists()


def test_run_with_bad_protocol_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "protocol:\n  name: x\n  technique: {kv: 72, mas: 20}\n  steps:\n    - {id: a, type: capture, view: {field: liver}}\n"
    )
    proc = fluoroctl("run", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:5: protocol.steps[0].view.field: unknown field 'liver'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_interrupt_during_a_prompt_aborts_safely(tmp_path):
    """Ctrl-C while the operator is being asked: safe state, record closed, scout kept."""
    import os
    import signal
    import time

    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler.cli",
            "run",
            "configs/protocols/ivu-accelerated.yaml",
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
    while time.monotonic() < deadline:
        if journal.exists() and '"kind":"prompt"' in journal.read_text():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("the exam never reached its first prompt")
    os.kill(proc.pid, signal.SIGINT)
    # stdin stays open until the process has exited: the blocked reader must not keep it alive
    proc.wait(timeout=60)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    abort = next(e for e in events if e["kind"] == "abort")
    assert abort["data"]["reason"] == "cancelled by the operator"
    assert abort["data"]["confirmed"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    assert events[-1]["kind"] == "exam_finished"
    assert "injection_started" not in {e["kind"] for e in events}
    assert (out / "001-scout.dcm").exists()
    assert (out / "contact-sheet.png").exists()


def test_operator_input_closed_aborts_cleanly(tmp_path):
    out = tmp_path / "eof"
    proc = run_with_terminal_operator(out, stdin="")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "aborted"
    assert "operator input closed" in summary["reason"]
    assert (out / "001-scout.dcm").exists()
