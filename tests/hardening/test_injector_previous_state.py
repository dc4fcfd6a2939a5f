"""Hazard: an injector still holding an earlier exam's injection (a room that kept running,
`sim serve` after an exam) was only noticed at the injection — after the scout X-ray.

At the start of a new exam such an injector is reset (completed, stopped, faulted or merely
armed with an old program) or, while it is still injecting, the exam is refused before
anything is moved or exposed.
"""

from __future__ import annotations

from drivers import Clock, InjectionPhase, InjectionProgram, InjectorState, VirtualTimeEventLoop

from ._mockroom import journal, make_runner, mock_devices

OLD = InjectionProgram((InjectionPhase(3.0, 100.0),), pressure_limit_kpa=2000.0)


def run_with_injector(tmp_path, state: InjectorState, started: bool):  # type: ignore[no-untyped-def]
    out = tmp_path / "exam"
    out.mkdir()
    loop = VirtualTimeEventLoop()

    async def go():  # type: ignore[no-untyped-def]
        devices, log = mock_devices(Clock.for_running_loop())
        injector = devices.injector
        injector.program, injector.state = OLD, state  # type: ignore[attr-defined]
        injector.started_at = -100.0 if started else None  # type: ignore[attr-defined]
        runner = make_runner(out, devices)
        return await runner.run(), log

    try:
        result, log = loop.run_until_complete(go())
    finally:
        loop.close()
    return result, log, journal(out)


def test_an_injector_still_injecting_is_refused_before_anything_moves(tmp_path):
    result, log, events = run_with_injector(tmp_path, InjectorState.INJECTING, True)
    assert result.state == "aborted"
    assert "the injector is injecting" in result.reason
    assert [c for _, d, c in log.calls if d == "carm"] == ["beam_off"]  # only the abort
    assert "move_to" not in log.names("table")
    assert not [e for e in events if e["kind"] == "command"]


def test_an_injector_left_completed_is_reset_before_the_exam(tmp_path):
    result, log, events = run_with_injector(tmp_path, InjectorState.COMPLETED, True)
    reset = [e for e in events if e["kind"] == "injector_reset"]
    assert len(reset) == 1 and reset[0]["data"]["found_state"] == "completed"
    assert log.names("injector")[0] == "disarm"
    assert result.state == "completed", result.reason
    arms = [e for e in events if e["kind"] == "command" and e["data"]["command"] == "arm"]
    assert arms[0]["data"]["volume_ml"] == 40.0  # this exam's program, not the old 100 mL


def test_an_injector_armed_with_an_old_program_is_disarmed_first(tmp_path):
    result, log, events = run_with_injector(tmp_path, InjectorState.ARMED, False)
    assert [e["data"]["found_state"] for e in events if e["kind"] == "injector_reset"] == ["armed"]
    assert log.names("injector")[:2] == ["disarm", "arm"]
    assert result.state == "completed", result.reason
