"""Hazard: a second interruption during the abort skipped devices' safe-state commands.

The abort (injector stop → beam off → table stop) runs to its end whatever arrives meanwhile;
the extra interruption is journaled, the record is closed, and only then does the
cancellation surface.
"""

from __future__ import annotations

import asyncio

import pytest

from drivers import Clock, VirtualTimeEventLoop
from scheduler.exam import abort as exam_abort

from ._mockroom import journal, make_runner, mock_devices

LINK_S = 0.010  # every command crosses a 10 ms link


@pytest.mark.parametrize("again_ms", [0, 5, 15, 25])
def test_a_second_cancel_during_the_abort_skips_no_device(tmp_path, monkeypatch, again_ms):
    loop = VirtualTimeEventLoop()
    out = tmp_path / "exam"
    out.mkdir()
    task: asyncio.Task[object] | None = None
    began: list[float] = []
    real_abort_all = exam_abort.abort_all

    async def abort_all_then_interrupt(devices, **kwargs):  # type: ignore[no-untyped-def]
        # the moment the abort sequence begins: cancel again `again_ms` into it
        began.append(loop.time())
        assert task is not None
        loop.call_at(began[0] + again_ms / 1000, task.cancel)
        return await real_abort_all(devices, **kwargs)

    monkeypatch.setattr(exam_abort, "abort_all", abort_all_then_interrupt)

    async def scenario():  # type: ignore[no-untyped-def]
        nonlocal task
        devices, log = mock_devices(Clock.for_running_loop(), LINK_S)
        scout = asyncio.Event()
        runner = make_runner(out, devices, on_capture=lambda _record: scout.set())
        task = asyncio.create_task(runner.run())
        await scout.wait()  # interrupt once the scout is on disk
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return runner, log

    try:
        runner, log = loop.run_until_complete(scenario())
    finally:
        loop.close()
    events = journal(out)
    kinds = [e["kind"] for e in events]
    abort = next(e for e in events if e["kind"] == "abort")
    assert abort["data"]["confirmed"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    assert kinds.count("abort_interrupt_ignored") == 1
    assert kinds.index("abort_interrupt_ignored") < kinds.index("abort")
    assert events[-1]["kind"] == "exam_finished"
    assert events[-1]["data"]["state"] == "aborted"
    after = [c for t, _d, c in log.calls if t >= began[0]]
    assert after[-3:] == ["stop", "beam_off", "stop"]  # injector, C-arm, table: in that order
    assert runner.result is not None and runner.result.interrupted
    assert runner.progress.abort_confirmations == abort["data"]["confirmed"]
