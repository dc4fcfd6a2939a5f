"""The exam engine against mock devices: ordering and records, independent of physics."""

from __future__ import annotations

import json

import pydicom

from drivers import VirtualTimeEventLoop
from scheduler.compose import run_exam

from .conftest import ROOT, WALL_ANCHOR

MOCK_ROOM = """\
room:
  name: mock room
  clock: virtual
  devices: {carm: "mock://carm", table: "mock://table", injector: "mock://injector"}
  operator: {mode: scripted}
"""


def run_mock(protocol: str, tmp_path):
    room = tmp_path / "mock-room.yaml"
    room.write_text(MOCK_ROOM)
    loop = VirtualTimeEventLoop()
    try:
        return loop.run_until_complete(
            run_exam(
                ROOT / f"configs/protocols/{protocol}.yaml",
                room,
                tmp_path / "out",
                wall_anchor=WALL_ANCHOR,
            )
        )
    finally:
        loop.close()


def test_tomo_steps_store_one_image_per_layer(tmp_path):
    outcome = run_mock("ivu-nephrotomography", tmp_path)
    assert outcome.result.state == "completed", outcome.result.reason
    out = tmp_path / "out"
    tomo_files = sorted(out.glob("*nephrotomo-*mm.dcm"))
    assert [p.name.split("-", 1)[1] for p in tomo_files] == [
        "nephrotomo-80mm.dcm",
        "nephrotomo-90mm.dcm",
        "nephrotomo-100mm.dcm",
    ]
    heights = [float(pydicom.dcmread(p).TomoLayerHeight) for p in tomo_files]
    assert heights == [80.0, 90.0, 100.0]
    assert len(list(out.glob("*.dcm"))) == 1 + 3 + 3 + 2
    step = next(s for s in outcome.summary["steps"] if s["id"] == "nephrotomo")
    assert len(step["files"]) == 3
    assert step["status"] == "done"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    commands = [
        e["data"]["command"]
        for e in events
        if e["kind"] == "command" and e["data"]["command"] != "prepare_view"
    ]
    assert commands == ["expose", "tomo", "arm", "start_injection", "tomo", "expose", "expose"]
