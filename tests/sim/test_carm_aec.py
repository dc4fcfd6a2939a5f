"""The simulated C-arm's AEC (hardware_sim/aec.py hooked into SimCArm._expose): the exposure
ends on the chambers, so a thin and a thick patient get the same exposure index at very
different mAs; a broken AEC is a typed generator event and the back-up timer ends the
exposure (the frame is kept); every radiograph carries its EI."""

from __future__ import annotations

from pathlib import Path

import yaml

from drivers import Clock, Technique
from drivers.backends import RoomRequest
from drivers.carm import AecMode
from drivers.events import DeviceEvent
from hardware_sim.room import SimRoom

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
AEC = Technique(kv=75.0, ma=400.0, exposure_ms=50.0, aec=AecMode(("centre",), 250.0, 500.0))


def room_for(tmp_path: Path, ap_cm: float) -> SimRoom:
    data = yaml.safe_load((ROOT / "configs/patients/normal.yaml").read_text())
    data["patient"]["build"]["ap_thickness_cm"] = ap_cm
    path = tmp_path / f"ap{ap_cm:g}.yaml"
    path.write_text(yaml.safe_dump(data))
    return SimRoom(RoomRequest(LINKS, Clock.for_running_loop(), {"patient": str(path)}, ROOT))


async def expose(room: SimRoom, technique: Technique) -> tuple[object, list[DeviceEvent]]:
    """The frame and the events the C-arm published during this exposure."""
    events: list[DeviceEvent] = []
    unsubscribe = room.carm.subscribe(events.append)
    try:
        await room.carm.set_technique(technique)
        frame = await room.carm.expose()
    finally:
        unsubscribe()
    return frame, events


def test_aec_ends_the_exposure_reports_its_index_and_its_own_fault(tmp_path, run_virtual):
    # (the AEC's dose constancy over 18–30 cm is tests/physics/test_aec.py, on small panels;
    # here one room: its hook in the generator, the events, the manual path untouched)
    manual = Technique(kv=75.0, ma=400.0, exposure_ms=50.0)

    async def scenario() -> list[tuple[object, list[DeviceEvent]]]:
        room = room_for(tmp_path, 22.0)
        out = [await expose(room, AEC), await expose(room, manual)]
        room.carm.aec.fail_next()
        out.append(await expose(room, AEC))
        return out

    (aec, aec_ev), (man, man_ev), (broken, broken_ev) = run_virtual(scenario)
    # the chambers ended it: not the nominal 20 mAs, and the panel got its target EI
    assert aec.technique.mas != AEC.mas
    assert aec.exposure_index.target == 250.0
    assert abs(aec.exposure_index.ei / 250.0 - 1.0) <= 0.25
    kinds = [e.kind for e in aec_ev]
    assert kinds.count("aec_terminated") == 1
    # manual: exactly the set mAs, still an EI, no AEC event
    assert man.technique.mas == manual.mas
    assert man.exposure_index is not None and man.exposure_index.ei > 0
    assert not any(e.kind.startswith("aec_") for e in man_ev)
    # the AEC's own fault: a typed generator event; the back-up timer ends the exposure
    fault = [e for e in broken_ev if e.kind == "aec_fault"]
    assert len(fault) == 1 and fault[0].data["terminated_by"] == "backup"
    assert broken.technique.mas == AEC.ma * 0.5  # 400 mA × the 500 ms back-up time
    assert broken.exposure_index.ei > 2.0 * aec.exposure_index.ei  # over-exposed, kept
