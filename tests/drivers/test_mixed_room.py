"""A room whose devices come from different backends: sim C-arm and table, ACME injector."""

from __future__ import annotations

import datetime as dt
import json
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pydicom
import pytest

import hardware_sim.room
from drivers import VirtualTimeEventLoop
from drivers.backends import backend_for_links
from scheduler.compose import run_exam
from scheduler.room import Room, load_room

ROOT = Path(__file__).resolve().parents[2]
WALL_ANCHOR = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)


SIM_ROOM = ROOT / "configs/rooms/simulator.yaml"


def mixed_room(injector: str = "acme://injector") -> Room:
    """The shipped simulator room with another injector.

    Built in code: the room file's validator accepts virtual time only for sim/mock links
    (scheduler/room.py IN_PROCESS_SCHEMES), though the ACME template runs in-process too.
    """
    room = load_room(SIM_ROOM)
    return room.model_copy(
        update={"devices": room.devices.model_copy(update={"injector": injector})}
    )


def run(room: Room | None, out: Path) -> dict:
    loop = VirtualTimeEventLoop()
    try:
        loop.run_until_complete(
            run_exam(
                ROOT / "configs/protocols/ivu-standard.yaml",
                SIM_ROOM,
                out,
                wall_anchor=WALL_ANCHOR,
                room=room,
            )
        )
    finally:
        loop.close()
    summary: dict = json.loads((out / "summary.json").read_text())
    return summary


def pixels(out: Path, step: str) -> np.ndarray:
    files = sorted(out.glob(f"*{step}*.dcm"))
    assert len(files) == 1, (step, files)
    return pydicom.dcmread(files[0]).pixel_array.astype(float)


def blocks(image: np.ndarray, size: int = 32) -> np.ndarray:
    h, w = (image.shape[0] // size) * size, (image.shape[1] // size) * size
    return image[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3))


def test_acme_is_found_by_its_entry_point(acme_kit: Path) -> None:
    (ep,) = entry_points(group="fluoroctl.backends", name="acme")
    assert ep.value == "acme_injector.backend:open_acme_room"
    assert ep.dist is not None and ep.dist.name == "acme-injector"


def test_mixed_room_runs_the_standard_exam_and_the_patient_gets_the_contrast(
    acme_kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = run(mixed_room(), tmp_path / "mixed")
    reference = run(None, tmp_path / "sim")
    assert summary["state"] == "completed", summary["reason"]
    assert [s["id"] for s in summary["steps"]] == [s["id"] for s in reference["steps"]]
    assert [s["status"] for s in summary["steps"]] == [s["status"] for s in reference["steps"]]
    assert summary["totals"]["images"] == reference["totals"]["images"]
    events = [json.loads(x) for x in (tmp_path / "mixed/events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "injection_started" for e in events)

    # Control: the same mixed room with a patient deaf to the foreign injector (no contrast).
    class Deaf:
        def __init__(self, *_args: object) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(hardware_sim.room, "InjectorFollower", Deaf)
    run(mixed_room(), tmp_path / "control")

    control = pixels(tmp_path / "control", "nephrogram")
    scout = pixels(tmp_path / "mixed", "scout")
    assert np.array_equal(scout, pixels(tmp_path / "control", "scout")), "same patient, same noise"
    # The all-sim room's contrast signal: where its nephrogram differs from the contrast-free
    # one, in 32×32-pixel block means (single pixels are dominated by quantum noise). The
    # mixed room's nephrogram must show that signal, same direction, comparable size.
    signal = blocks(pixels(tmp_path / "sim", "nephrogram") - control)
    mixed = blocks(pixels(tmp_path / "mixed", "nephrogram") - control)
    region = np.abs(signal) >= np.percentile(np.abs(signal), 95)
    assert abs(signal[region].mean()) > 50, "the all-sim room's nephrogram shows contrast"
    assert np.sign(mixed[region].mean()) == np.sign(signal[region].mean())
    assert mixed[region].mean() == pytest.approx(signal[region].mean(), rel=0.2)
    # and so, against the scout, those regions changed more than without contrast
    nephro_vs_scout = blocks(pixels(tmp_path / "mixed", "nephrogram") - scout)[region].mean()
    control_vs_scout = blocks(control - scout)[region].mean()
    assert np.sign(nephro_vs_scout - control_vs_scout) == np.sign(signal[region].mean())


def test_one_backend_room_is_opened_by_that_backend_alone() -> None:
    links = {"carm": "mock://carm", "table": "mock://table", "injector": "mock://injector"}
    loop = VirtualTimeEventLoop()
    try:
        from drivers import Clock
        from drivers.backends import RoomRequest

        async def main() -> object:
            devices = await backend_for_links(links)(RoomRequest(links, Clock.for_running_loop()))
            info = dict(devices.info)
            await devices.aclose()
            return info

        info = loop.run_until_complete(main())
    finally:
        loop.close()
    assert info["patient_id"] == "MOCK"


@pytest.mark.parametrize("roles", [("table",), ("carm", "table")])
def test_mixed_mock_and_sim_roles_open_as_one_room(roles: tuple[str, ...]) -> None:
    from drivers import Clock
    from drivers.backends import RoomRequest
    from drivers.mock import MockInjector
    from hardware_sim.table import SimTable

    links = {r: f"sim://{r}" for r in roles} | {
        r: f"mock://{r}" for r in ("carm", "table", "injector") if r not in roles
    }
    if "carm" in links and links["carm"].startswith("sim") and "table" not in roles:
        return
    loop = VirtualTimeEventLoop()
    try:

        async def main() -> tuple[object, object]:
            devices = await backend_for_links(links)(RoomRequest(links, Clock.for_running_loop()))
            try:
                return devices.table, devices.injector
            finally:
                await devices.aclose()

        table, injector = loop.run_until_complete(main())
    finally:
        loop.close()
    assert isinstance(table, SimTable)
    assert isinstance(injector, MockInjector)
