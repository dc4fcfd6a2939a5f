"""Hazard: the terminal and the console show a film at another T+ than the record.

Over real links a ``capture`` line is journaled when the image is durable, a USB transfer after
the exposure (≈ 20 s of exam time at 60×). The record counts the film at the device-reported
exposure; both displays must show that same moment. The standard exam runs in-process (virtual
time), then its capture lines are replayed with ``t_s`` moved 20 s later, as links make them.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from rich.console import Console

import fluoroctl
from scheduler.console.view import ExamView
from scheduler.exam import ExamProgress
from scheduler.journal import ExamEvent
from scheduler.progress import ProgressView

LINK_DELAY_S = 20.0


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = tmp_path_factory.mktemp("moments") / "exam"
    fluoroctl.run_exam("ivu-standard", out=out)
    lines = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    for line in lines:
        if line["kind"] == "capture":
            line["t_s"] += LINK_DELAY_S
    return lines, json.loads((out / "summary.json").read_text())


def timed_films(summary: dict[str, Any]) -> dict[str, float]:
    return {
        s["id"]: s["actual_after_injection_s"]
        for s in summary["steps"]
        if s["planned_after_injection_s"] is not None and s["files"]
    }


def test_the_terminal_shows_each_film_at_the_records_t_plus(exam):
    lines, summary = exam
    out = io.StringIO()
    view = ProgressView(
        ExamProgress(protocol="x"), clock=None, console=Console(file=out, width=300)
    )  # type: ignore[arg-type]
    for line in lines:
        if line["kind"] == "injection_confirmed":
            view.progress.injection_start_s = line["data"]["started_at_s"]
        view.on_event(ExamEvent(**line))
    shown = {
        m["step"]: 60 * int(m["mm"]) + float(m["ss"])
        for m in re.finditer(
            r"T\+(?P<mm>\d\d):(?P<ss>\d\d\.\d)\s+(?P<step>\S+)\s+captured .*on disk 2\d\.\d s later",
            out.getvalue(),
        )
    }
    films = timed_films(summary)
    assert len(films) == 4 and set(films) <= set(shown)
    for step, actual in films.items():
        assert shown[step] == pytest.approx(actual, abs=0.051), step


def test_the_console_journal_shows_each_film_at_the_records_t_plus(exam):
    lines, summary = exam
    films = timed_films(summary)
    view = ExamView()
    seen = {}
    for line in lines:
        view.apply(line)
        if line["kind"] == "capture" and line["step"] in films:
            seen[line["step"]] = float(re.match(r"T\+\s*(-?[\d.]+)s", view.journal[-1])[1])
    assert set(seen) == set(films)
    for step, actual in films.items():
        assert seen[step] == pytest.approx(actual, abs=0.051), step
