"""Hazard: after an abort the summary said 0 mL of contrast, whatever the patient received.

The summary reports what the injector says it delivered: its final report, or its stop
report after an abort.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from drivers import VirtualTimeEventLoop
from scheduler.compose import run_exam

from ..exam.conftest import ROOT, WALL_ANCHOR


def test_an_exam_interrupted_during_the_injection_reports_the_contrast_given(tmp_path):
    out = tmp_path / "exam"
    loop = VirtualTimeEventLoop()

    async def scenario() -> None:
        task: asyncio.Task[object] | None = None

        def on_event(event) -> None:  # type: ignore[no-untyped-def]
            if event.kind == "injection_started" and task is not None:
                asyncio.get_running_loop().call_later(5.0, task.cancel)

        task = asyncio.create_task(
            run_exam(
                ROOT / "configs/protocols/ivu-accelerated.yaml",
                ROOT / "configs/rooms/simulator.yaml",
                out,
                wall_anchor=WALL_ANCHOR,
                on_event=on_event,
            )
        )
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    stopped = [e for e in events if e["kind"] == "stopped" and e["source"] == "injector"]
    assert stopped, "the abort did not stop the injector"
    delivered = stopped[-1]["data"]["delivered_ml"]
    assert 0 < delivered < 40  # part of the 40 mL program
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "aborted"
    assert summary["totals"]["contrast_delivered_ml"] == pytest.approx(delivered, abs=0.01)
    finished = events[-1]
    assert finished["kind"] == "exam_finished"
    assert finished["data"]["contrast_delivered_ml"] == pytest.approx(delivered, abs=0.001)
