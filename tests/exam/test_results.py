"""What summary.json's timing fields mean (docs/results.md), on the standard exam."""

from __future__ import annotations

import json
from typing import Any

import pytest


def kinds(exam: Any, kind: str) -> list[dict[str, Any]]:
    """The exam's journal lines of ``kind``, read from its folder."""
    lines = (exam.out / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def test_a_prompts_confirmation_delay_is_not_lateness(standard: Any):
    prompts = [s for s in standard.summary["steps"] if s["type"] == "prompt"]
    assert any(s["planned_s"] is not None for s in prompts)  # compression-off is timed
    for s in prompts:
        assert s["lateness_s"] is None and s["device_lateness_s"] is None, s
    # a perfect run: every timed film within milliseconds, the injector within its latency
    assert standard.summary["totals"]["max_abs_device_lateness_s"] < 0.5


def test_actual_is_the_device_reported_time_everywhere(standard: Any):
    anchor = kinds(standard, "injection_confirmed")[0]["data"]["started_at_s"]
    exposures = {e["step"]: e["data"]["acquired_at_s"] for e in kinds(standard, "exposure")}
    for s in standard.summary["steps"]:
        assert s["actual_s"] is not None, s
        assert s["actual_after_injection_s"] == pytest.approx(s["actual_s"] - anchor, abs=1e-5)
        if s["type"] == "capture":
            # the C-arm's own exposure report, not the command time (a timed film's beam-on
            # is its commanded time point: decision 0016; untimed ones come on after it)
            assert s["actual_s"] == pytest.approx(exposures[s["id"]], abs=1e-6)
            assert s["actual_s"] >= s["commanded_s"]
            assert s["actual_s"] > s["commanded_s"] or s["trigger"] == "timed"


def test_lateness_is_about_timed_acquisitions_and_the_injection_start(standard: Any):
    for s in standard.summary["steps"]:
        timed_film = s["type"] == "capture" and s["planned_s"] is not None
        if timed_film:
            assert s["lateness_s"] == pytest.approx(s["commanded_s"] - s["planned_s"], abs=1e-6)
            assert s["device_lateness_s"] == pytest.approx(s["actual_s"] - s["planned_s"], abs=1e-6)
        elif s["type"] == "inject":
            assert s["lateness_s"] is None
            # the injector reported its start this long after it was sent the command
            assert (
                0
                < s["device_lateness_s"]
                == pytest.approx(s["actual_s"] - s["commanded_s"], abs=1e-6)
            )
        else:
            assert s["lateness_s"] is None and s["device_lateness_s"] is None, s
