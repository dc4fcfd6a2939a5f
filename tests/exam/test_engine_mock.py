"""The exam engine against mock devices: ordering and records, independent of physics."""

from __future__ import annotations

import pydicom

from fluoroctl.testing import ExamRun, RunProtocol

from .conftest import ROOT, WALL_ANCHOR

MOCK_ROOM = """\
room:
  name: mock room
  clock: virtual
  devices: {carm: "mock://carm", table: "mock://table", injector: "mock://injector"}
  operator: {mode: scripted}
"""


def run_mock(run_protocol: RunProtocol, protocol: str, tmp_path) -> ExamRun:
    room = tmp_path / "mock-room.yaml"
    room.write_text(MOCK_ROOM)
    return run_protocol(
        ROOT / f"configs/protocols/{protocol}.yaml",
        room=room,
        out=tmp_path / "out",
        wall_anchor=WALL_ANCHOR,
    )


def test_tomo_steps_store_one_image_per_layer(run_protocol, tmp_path):
    exam = run_mock(run_protocol, "ivu-nephrotomography", tmp_path)
    assert exam.outcome.state == "completed", exam.outcome.reason
    out = tmp_path / "out"
    tomo_files = sorted(out.glob("*nephrotomo-*mm.dcm"))
    assert [p.name.split("-", 1)[1] for p in tomo_files] == [
        "nephrotomo-80mm.dcm",
        "nephrotomo-90mm.dcm",
        "nephrotomo-100mm.dcm",
    ]
    heights = [float(pydicom.dcmread(p).TomoLayerHeight) for p in tomo_files]
    assert heights == [80.0, 90.0, 100.0]
    assert len(list(out.glob("[0-9][0-9][0-9]-*.dcm"))) == 1 + 3 + 3 + 2
    step = exam.step("nephrotomo")
    assert len(step.images) == 3
    assert step.status == "done"
    commands = [
        e.data["command"] for e in exam.events_of("command") if e.data["command"] != "prepare_view"
    ]
    assert commands == ["expose", "tomo", "arm", "start_injection", "tomo", "expose", "expose"]
