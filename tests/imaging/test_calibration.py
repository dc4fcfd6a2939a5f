"""``fluoroctl calibrate`` stores the panel's calibration with the room; an exam refuses a
stale or mismatched one with one line and exit code 2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from scheduler.cli import main
from scheduler.cli_calibrate import add_calibrate_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator room file whose calibration folder was filled by ``fluoroctl calibrate``."""
    folder = tmp_path_factory.mktemp("room")
    room = yaml.safe_load((ROOT / "configs/rooms/simulator.yaml").read_text())
    room["room"]["options"]["calibration"] = str(folder / "cal")
    room["room"]["options"]["calibration_max_age_h"] = 24
    path = folder / "room.yaml"
    path.write_text(yaml.safe_dump(room))
    parser = argparse.ArgumentParser()
    add_calibrate_parser(parser.add_subparsers())
    args = parser.parse_args(["calibrate", str(path), "--frames", "2"])
    assert args.func(args) == 0
    return path


def _manifest(room: Path) -> Path:
    return room.parent / "cal" / "calibration.json"


def _run(room: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["run", "ivu-standard", "--room", str(room), "--out", str(out)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_calibrate_stores_every_panel_mode(calibrated: Path) -> None:
    doc = json.loads(_manifest(calibrated).read_text())
    assert doc["modes"]["radiography"]["rows"] == 1024
    assert doc["modes"]["fluoroscopy"]["binning"] == 2
    assert doc["modes"]["radiography"]["defect_pixels"] > 0
    assert (calibrated.parent / "cal" / "fluoroscopy.npz").is_file()


@pytest.mark.parametrize(
    ("edit", "word"),
    [
        (lambda d: d.update(taken_at="2020-01-01T00:00:00+00:00"), "stale"),
        (lambda d: d["modes"]["fluoroscopy"].update(binning=1), "mismatched"),
        (lambda d: d["modes"].pop("fluoroscopy"), "mismatched"),
    ],
    ids=["stale", "other-binning", "mode-missing"],
)
def test_exam_refuses_stale_or_mismatched(
    calibrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, word: str
) -> None:
    manifest = _manifest(calibrated)
    original = manifest.read_text()
    doc = json.loads(original)
    edit(doc)
    manifest.write_text(json.dumps(doc))
    try:
        code, lines = _run(calibrated, tmp_path / "exam", capsys)
    finally:
        manifest.write_text(original)
    assert code == 2
    assert len(lines) == 1, lines
    assert str(manifest) in lines[0] and word in lines[0]
    assert not list((tmp_path / "exam").glob("*.dcm"))


def test_raw_panel_without_calibration_that_cannot_calibrate_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw panel that needs an operator to calibrate is not calibrated by the exam."""
    from hardware_sim.carm import SimCArm

    monkeypatch.setattr(SimCArm, "__init__", _attended(SimCArm.__init__))
    room = yaml.safe_load((ROOT / "configs/rooms/simulator.yaml").read_text())
    room["room"]["options"]["calibration"] = str(tmp_path / "none")
    path = tmp_path / "room.yaml"
    path.write_text(yaml.safe_dump(room))
    code, lines = _run(path, tmp_path / "exam", capsys)
    assert code == 2
    assert len(lines) == 1 and "no calibration" in lines[0] and "calibrate" in lines[0]


def _attended(init):  # type: ignore[no-untyped-def]
    def wrapped(self, *a, **k):  # type: ignore[no-untyped-def]
        init(self, *a, **k)
        self.unattended_calibration = False

    return wrapped
