"""Helpers for the exam-folder hazards: real crashed exams, folder snapshots, the CLI.

A crashed exam is a real ``fluoroctl run`` of the accelerated IVU on the in-process
simulator that SIGKILLs itself right after writing its N-th journal line
(``FLUOROCTL_CRASH_AFTER_EVENT``, see scheduler/exam/hooks.py). The exam is deterministic on
virtual time, so line N is always the same record; tests that depend on which record it is
assert it (:func:`line_at`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"
JOURNAL = "events.jsonl"


CRASH = "FLUOROCTL_CRASH_AFTER_EVENT"


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    stdin: int | None = subprocess.DEVNULL,
    crash_after: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m scheduler.cli ARGS``; with ``crash_after`` it SIGKILLs itself after that
    journal line (a crash hook inherited from the test's environment never applies)."""
    full = {k: v for k, v in os.environ.items() if k != CRASH} | (env or {})
    if crash_after is not None:
        full[CRASH] = str(crash_after)
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
        env=full,
    )


def crash_exam(out: Path, n: int, protocol: Path = PROTOCOL) -> Path:
    """Run ``protocol`` into ``out`` and kill the process right after journal line ``n``."""
    proc = cli("run", str(protocol), "--out", str(out), crash_after=n)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(journal_lines(out)) == n
    return out


def copy_exam(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name → bytes): to prove nothing changed."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def journal_lines(folder: Path) -> list[bytes]:
    """The journal's complete lines, without their newlines."""
    data = (folder / JOURNAL).read_bytes()
    return data.split(b"\n")[:-1]


def write_journal(folder: Path, lines: list[bytes], tail: bytes = b"") -> None:
    (folder / JOURNAL).write_bytes(b"".join(line + b"\n" for line in lines) + tail)


def events(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal_lines(folder)]


def line_at(folder: Path, n: int) -> dict[str, Any]:
    """Journal line ``n`` (1-based) as a dict."""
    record: dict[str, Any] = json.loads(journal_lines(folder)[n - 1])
    return record


def images(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("[0-9][0-9][0-9]-*.dcm")}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI refused with exit 2 and one line on stderr, no traceback; that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]
