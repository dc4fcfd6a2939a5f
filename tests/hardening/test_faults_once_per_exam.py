"""Hazard: ``--fault`` specs fired again after ``fluoroctl resume``.

The specs travel in the room's options, which the journal keeps, so ``resume`` reopened the
in-process simulator with them and armed every one again relative to the resume moment: a
fault that had fired before the crash fired a second time, and one not yet due fired late.
The simulator's saved state now records which specs fired and when the exam began; a resumed
room never re-arms a fired spec and arms the others at their original absolute times.

Each test crashes a real ``fluoroctl run`` (FLUOROCTL_CRASH_AFTER_EVENT, a SIGKILL right after
the N-th journal line), resumes it, and compares the faults in the journal with an uncrashed
run of the same exam (virtual time makes both deterministic).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.exam_folders import cli
from tests.hardening.exam_folders import events as journal

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"
#: generator faults armed at exam times 7 s (during the injection; it hits the next exposure,
#: the 1-min film) and 200 s (it hits the 4-min film), and an injector fault during the
#: injection (T+20s of a 30 s injection)
FAULTS = [
    "--fault",
    "generator@7",
    "--fault",
    "injector.occlusion@T+20s",
    "--fault",
    "generator@200",
]


def faults(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Every fault the exam saw: the scheduler's fault lines and the devices' own reports."""
    return [
        (
            e["kind"],
            e["source"],
            e["data"].get("device"),
            e["data"].get("fault"),
            e["step"],
            round(e["t_s"], 3),
        )
        for e in events
        if e["kind"] in ("fault", "faulted", "fault_reported", "generator_fault")
    ]


def seq_of(events: list[dict[str, Any]], kind: str, step: str | None = None) -> int:
    return next(
        e["seq"] for e in events if e["kind"] == kind and (step is None or e["step"] == step)
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("reference") / "exam"
    proc = cli("run", str(PROTOCOL), *FAULTS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = journal(out)
    seen = faults(events)
    # the exam this file is about: each fault shows once, the generator's on the 4-min film
    assert [f[3] for f in seen if f[0] == "fault"] == ["occlusion", "generator", "generator"]
    assert [f[4] for f in seen if f[0] == "generator_fault"] == ["film-1min", "film-4min"]
    return events


def crash_then_resume(out: Path, crash_after: int) -> list[dict[str, Any]]:
    proc = cli("run", str(PROTOCOL), *FAULTS, "--out", str(out), crash_after=crash_after)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    resumed = cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return journal(out)


def test_faults_that_fired_before_the_crash_are_not_fired_again(reference, tmp_path):
    # Crash right after the 4-min film was captured: both faults have fired.
    n = seq_of(reference, "capture", "film-4min")
    events = crash_then_resume(tmp_path / "exam", n)
    assert events[-1]["kind"] == "exam_finished" and events[-1]["seq"] > n
    assert faults(events) == faults(reference)


def first_status_after(events: list[dict[str, Any]], t_s: float) -> int:
    return next(e["seq"] for e in events if e["kind"] == "status" and e["t_s"] > t_s)


@pytest.mark.parametrize(
    "crash_at",
    [
        # all three still to come
        lambda ev: seq_of(ev, "injection_confirmed"),
        # generator@7 fired, its effect (the next exposure fails) not yet seen; rest to come
        lambda ev: first_status_after(ev, 7.5),
        # occlusion and generator@7 done; generator@200 to come (armed at resume + 200 s it
        # would miss the 4-min film and hit the 7-min one)
        lambda ev: seq_of(ev, "capture", "film-1min"),
    ],
    ids=["at-injection-start", "effect-pending", "after-film-1min"],
)
def test_faults_not_yet_due_at_the_crash_fire_once_at_their_original_time(
    reference, tmp_path, crash_at
):
    n = crash_at(reference)
    events = crash_then_resume(tmp_path / "exam", n)
    assert faults(events) == faults(reference)


def test_fired_faults_stay_fired_across_a_second_crash(reference, tmp_path):
    # First crash after the occlusion (before the generator fault is due); the resumed
    # process crashes too, a few lines on; the second resume still fires nothing twice.
    out = tmp_path / "exam"
    n = seq_of(reference, "fault")
    proc = cli("run", str(PROTOCOL), *FAULTS, "--out", str(out), crash_after=n)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    again = cli("resume", str(out), crash_after=n + 8)
    assert again.returncode == -signal.SIGKILL, again.stderr[-2000:]
    final = cli("resume", str(out))
    assert final.returncode == 0, final.stderr[-2000:]
    assert faults(journal(out)) == faults(reference)
