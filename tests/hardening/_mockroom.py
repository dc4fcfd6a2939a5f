"""An exam runner over mock devices with a link delay, built directly (no room file)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import json
from pathlib import Path
from typing import Any

from drivers import Clock
from drivers.backends import DeviceSet
from drivers.mock import CallLog, MockCArm, MockInjector, MockTable
from scheduler.exam import ExamRunner, RoomInfo, make_exam_info
from scheduler.operator import ScriptedOperator
from scheduler.protocol import load_protocol
from scheduler.room import Room

ROOT = Path(__file__).resolve().parents[2]
WALL = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)

MOCK_ROOM = Room.model_validate(
    {
        "name": "mock room",
        "clock": "virtual",
        "devices": {"carm": "mock://carm", "table": "mock://table", "injector": "mock://injector"},
        "operator": {"mode": "scripted"},
    }
)


def add_link_delay(device: object, delay_s: float) -> None:
    """Every hook of ``device`` (``_expose``, ``_stop``, ``_status``, ...) first waits
    ``delay_s`` on the loop, as a command crossing a link would."""
    for name, method in inspect.getmembers(type(device), inspect.iscoroutinefunction):
        if not name.startswith("_") or name.startswith("__") or name == "_call":
            continue
        bound = getattr(device, name)

        @functools.wraps(method)
        async def delayed(*args: Any, _bound: Any = bound, **kwargs: Any) -> Any:
            await asyncio.sleep(delay_s)
            return await _bound(*args, **kwargs)

        setattr(device, name, delayed)


def mock_devices(clock: Clock, delay_s: float = 0.0) -> tuple[DeviceSet, CallLog]:
    log = CallLog()
    devices = DeviceSet(
        carm=MockCArm("carm", clock, log),
        table=MockTable("table", clock, log),
        injector=MockInjector("injector", clock, log),
        info={"patient_id": "MOCK", "patient_name": "Mock^Patient"},
    )
    if delay_s:
        for device in (devices.carm, devices.table, devices.injector):
            add_link_delay(device, delay_s)
    return devices, log


def make_runner(
    out: Path,
    devices: DeviceSet,
    protocol: str = "ivu-accelerated",
    room: Room = MOCK_ROOM,
    **kwargs: Any,
) -> ExamRunner:
    clock = Clock.for_running_loop(WALL)
    proto = load_protocol(ROOT / f"configs/protocols/{protocol}.yaml")
    patient = RoomInfo.of(devices).patient
    assert patient is not None
    exam = make_exam_info(proto, room, patient, WALL)
    operator = ScriptedOperator(clock, room.operator.delays_s)
    return ExamRunner(proto, room, devices, clock, operator, out, exam, **kwargs)


def journal(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
