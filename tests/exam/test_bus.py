"""The exam event stream: stamping, the durable subscriber first, bounded deferred delivery."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from drivers import Clock, DeviceEvent
from scheduler.exam.bus import EventBus, Recorded
from scheduler.exam.events import (
    DURABLE_KINDS,
    CaptureMissed,
    ExamFinished,
    Kind,
    StepStarted,
)

WALL = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)


def make_bus(start_seq: int = 0) -> EventBus:
    return EventBus(Clock.for_running_loop(WALL), start_seq=start_seq)


def missed(step: str = "film") -> CaptureMissed:
    return CaptureMissed(step=step, reason="late")


def test_events_are_stamped_and_numbered_after_the_record_they_continue(run_virtual):
    async def main() -> list[Recorded]:
        bus = make_bus(start_seq=41)
        await asyncio.sleep(2.5)
        return [bus.emit(missed()), bus.emit(StepStarted(step="x", title="X")), bus.emit(missed())]

    first, transient, second = run_virtual(main)
    assert (first.seq, transient.seq, second.seq) == (42, None, 43)
    assert first.t_s == 2.5 and first.wall == "2026-03-04T09:30:02.500+00:00"
    assert first.line.model_dump() == {
        "seq": 42,
        "t_s": 2.5,
        "wall": "2026-03-04T09:30:02.500+00:00",
        "source": "scheduler",
        "kind": "capture_missed",
        "step": "film",
        "data": {"reason": "late"},
    }
    with pytest.raises(AssertionError):
        _ = transient.line  # a transient event has no journal line


def test_the_durable_subscriber_comes_first_and_its_failure_stops_the_event(run_virtual):
    order: list[str] = []

    async def main() -> tuple[EventBus, list[int | None]]:
        bus = make_bus()
        fail = {"now": False}

        def journal(r: Recorded) -> None:
            if fail["now"]:
                raise OSError("disk full")
            order.append(f"journal {r.seq}")

        bus.subscribe(lambda r: order.append(f"hook {r.seq}"), inline=True)
        bus.subscribe(journal, durable=True)
        bus.subscribe(lambda r: order.append(f"display {r.seq}"))
        bus.emit(missed())
        fail["now"] = True
        with pytest.raises(OSError):
            bus.emit(missed())
        fail["now"] = False
        seqs = [bus.emit(missed()).seq]
        await asyncio.sleep(0)
        return bus, seqs

    bus, seqs = run_virtual(main)
    # the failed line used no number: the journal stays 1..N
    assert seqs == [2] and bus.seq == 2
    assert order == ["journal 1", "hook 1", "journal 2", "hook 2", "display 1", "display 2"]


def test_deferred_subscribers_never_run_inside_emit_and_keep_the_order(run_virtual):
    seen: list[int | None] = []

    async def main() -> list[int | None]:
        bus = make_bus()
        bus.subscribe(lambda r: seen.append(r.seq))
        for _ in range(3):
            bus.emit(missed())
        during = list(seen)
        await asyncio.sleep(0)
        return during

    during = run_virtual(main)
    assert during == []
    assert seen == [1, 2, 3]


def test_a_slow_subscriber_loses_its_oldest_events_not_the_exam(run_virtual):
    async def main() -> tuple[list[int | None], int]:
        bus = make_bus()
        stream = bus.stream(maxsize=3)
        for _ in range(10):
            bus.emit(missed())
        bus.close()
        got = [r.seq async for r in stream]
        return got, stream.dropped

    got, dropped = run_virtual(main)
    assert got == [8, 9, 10]
    assert dropped == 7


def test_a_failing_observer_is_logged_and_the_others_still_see_everything(run_virtual, caplog):
    seen: list[str] = []

    async def main() -> None:
        bus = make_bus()

        def broken(r: Recorded) -> None:
            raise ValueError("display bug")

        bus.subscribe(broken)
        bus.subscribe(lambda r: seen.append(r.kind))
        bus.emit(missed())
        bus.emit(
            ExamFinished(
                state="completed", reason="", images=1, duration_s=1.0, contrast_delivered_ml=0.0
            )
        )
        bus.close()

    run_virtual(main)
    assert seen == ["capture_missed", "exam_finished"]
    assert "display bug" in caplog.text


def test_unsubscribed_listeners_get_what_was_sent_before_and_nothing_after(run_virtual):
    seen: list[int | None] = []

    async def main() -> None:
        bus = make_bus()
        unsubscribe = bus.subscribe(lambda r: seen.append(r.seq))
        bus.emit(missed())
        unsubscribe()
        bus.emit(missed())
        await asyncio.sleep(0)

    run_virtual(main)
    assert seen == [1]


def test_device_events_are_journaled_under_the_device_at_its_own_time(run_virtual):
    async def main() -> Recorded:
        bus = make_bus()
        await asyncio.sleep(10.0)
        event = DeviceEvent("inj-1", "injection_started", 9.75, {"started_at_s": 9.75})
        return bus.emit_device(event, "injector", "inject")

    r = run_virtual(main)
    assert (r.source, r.kind, r.step, r.t_s) == ("inj-1", "injection_started", "inject", 9.75)
    assert r.line.data == {"started_at_s": 9.75}
    assert r.durable


def test_every_scheduler_kind_is_typed_and_durability_is_declared_once():
    kinds = {k.value for k in Kind}
    assert {"capture", "command", "step_done", "exam_finished"} <= kinds
    assert {k for k in DURABLE_KINDS if k in kinds} <= kinds
    # the journal module no longer keeps its own list
    import scheduler.journal as journal

    assert not hasattr(journal, "DURABLE_KINDS")


def test_each_kind_has_its_typed_event():
    from scheduler.exam import events

    classes = [
        c for c in vars(events).values() if isinstance(c, type) and issubclass(c, events.Event)
    ]
    classes.remove(events.Event)
    declared = {c.KIND for c in classes}
    # two classes carry their kind in a field: the operator's answer, the dose notice
    by_field = {Kind.DECLINED, Kind.FLUORO_TIMER_ALERT, Kind.DOSE_RATE_EXCEEDED}
    assert declared | by_field == set(Kind)
    assert all(c.__dataclass_params__.frozen for c in classes)
