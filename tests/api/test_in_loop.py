"""``await fluoroctl.run_exam_async(...)`` from inside a running event loop (Jupyter's case).

A running loop cannot change its time base: on a real-time loop the simulator's exam runs
on a virtual-time loop in a worker thread; on a virtual-time loop it runs right there.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import fluoroctl
from drivers import VirtualTimeEventLoop
from fluoroctl import ExamEvent, ExamOutcome


def test_run_exam_async_inside_asyncio_run(tmp_path):
    out = tmp_path / "exam"
    callers: set[int] = set()
    kinds: list[str] = []

    def on_event(event: ExamEvent) -> None:
        callers.add(threading.get_ident())
        kinds.append(event.kind)

    async def notebook_cell() -> tuple[ExamOutcome, int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        other_work = asyncio.create_task(ticker())
        outcome = await fluoroctl.run_exam_async("ivu-accelerated", out=out, on_event=on_event)
        other_work.cancel()
        return outcome, ticks, threading.get_ident()

    outcome, ticks, loop_thread = asyncio.run(notebook_cell())
    assert outcome.state == "completed" and outcome.exit_code == 0, outcome.reason
    assert ticks > 0  # the notebook's loop went on while the exam ran
    assert callers == {loop_thread}  # events are delivered on the caller's loop
    journal = [json.loads(line)["kind"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert kinds == journal
    assert outcome == fluoroctl.read_outcome(out)


def test_on_a_virtual_time_loop_the_exam_runs_on_it(tmp_path):
    loop = VirtualTimeEventLoop()
    threads: set[int] = set()

    def on_event(_event: ExamEvent) -> None:
        threads.add(threading.get_ident())

    async def go() -> tuple[ExamOutcome, float]:
        t0 = loop.time()
        outcome = await fluoroctl.run_exam_async(
            "ivu-accelerated", out=tmp_path / "exam", on_event=on_event
        )
        return outcome, loop.time() - t0

    try:
        outcome, elapsed = loop.run_until_complete(go())
    finally:
        loop.close()
    assert outcome.state == "completed", outcome.reason
    assert threads == {threading.get_ident()}  # no worker thread
    # The exam's own time passed on this loop's clock.
    assert outcome.totals.exam_duration_s > 7 * 60
    assert elapsed == pytest.approx(outcome.totals.exam_duration_s, abs=1.0)


def test_the_blocking_call_inside_a_loop_says_what_to_use(tmp_path):
    async def cell() -> None:
        fluoroctl.run_exam("ivu-accelerated", out=tmp_path / "exam")

    with pytest.raises(RuntimeError, match=r"await fluoroctl\.run_exam_async"):
        asyncio.run(cell())
    assert not (tmp_path / "exam").exists()


def test_cancelling_the_await_aborts_the_exam_before_it_returns(tmp_path):
    out = tmp_path / "exam"

    async def cell() -> bool:
        first_image = asyncio.Event()

        def on_event(event: ExamEvent) -> None:
            if event.kind == "capture":
                first_image.set()

        task = asyncio.create_task(
            fluoroctl.run_exam_async("ivu-accelerated", out=out, on_event=on_event)
        )
        await first_image.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # By the time the cancellation arrives, the abort has finished and been recorded.
            return (out / "summary.json").exists()
        raise AssertionError("the exam was not cancelled")

    assert asyncio.run(cell()) is True
    outcome = fluoroctl.read_outcome(out)
    assert outcome.state == "aborted" and outcome.interrupted
    assert outcome.exit_code == 130
    assert dict(outcome.abort_confirmations) == {
        "injector": "safe",
        "carm": "safe",
        "table": "safe",
    }
    assert [p.name for p in outcome.images] == ["001-scout.dcm"]
