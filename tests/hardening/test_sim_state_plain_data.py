"""Hazard: the simulator's saved state could run code.

The in-process simulator kept its detector memory as ``sim-state/acquisition-NNN.pkl`` and
unpickled every such file on ``resume``: a file dropped into an exam folder ran code. The
state is now plain data (JSON + NPZ read with ``allow_pickle=False``); a file that is not
exactly what the simulator wrote is skipped with a logged reason, never loaded, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle  # only to build the hostile files the simulator must refuse
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers import (
    Clock,
    FluoroRequest,
    FluoroRun,
    Frame,
    Technique,
    TomoRequest,
    TomoSeries,
)
from drivers.backends import RoomRequest
from drivers.config import ConfigError
from hardware_sim.persist import STATE_FILE
from hardware_sim.room import SimRoom
from tests.hardening.exam_folders import cli
from tests.hardening.exam_folders import events as journal

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"carm": "sim://carm", "table": "sim://table", "injector": "sim://injector"}
TECHNIQUE = Technique(75.0, 400.0, 50.0)


def sim_room(**options: Any) -> SimRoom:
    return SimRoom(
        RoomRequest(LINKS, Clock.for_running_loop(), {"patient": "normal", **options}, ROOT)
    )


async def acquire(room: SimRoom, kind: str) -> Frame | FluoroRun | TomoSeries:
    await room.carm.set_technique(TECHNIQUE)
    if kind == "radiograph":
        return await room.carm.expose()
    if kind == "fluoro":
        return await room.carm.fluoro(FluoroRequest(4.0, 1.0, Technique(70.0, 2.0, 8.0)))
    return await room.carm.tomosynthesis(
        TomoRequest((60.0, 90.0), TECHNIQUE, sweep_deg=20.0, projections=5)
    )


def same_frame(a: Frame, b: Frame) -> None:
    assert np.array_equal(a.pixels, b.pixels) and a.pixels.dtype == b.pixels.dtype
    for name in (
        "pixel_spacing_mm",
        "acquired_at_s",
        "technique",
        "pose",
        "collimation",
        "dose",
        "bits_stored",
    ):
        assert getattr(a, name) == getattr(b, name), name


def same_result(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, Frame):
        same_frame(a, b)
        return
    frames_a = a.frames if isinstance(a, FluoroRun) else a.layers
    frames_b = b.frames if isinstance(b, FluoroRun) else b.layers
    assert len(frames_a) == len(frames_b) > 0
    for fa, fb in zip(frames_a, frames_b, strict=True):
        same_frame(fa, fb)
    fields = (
        ("pulse_rate_hz", "started_at_s", "ended_at_s")
        if isinstance(a, FluoroRun)
        else ("heights_mm", "sweep_deg", "projections", "started_at_s", "ended_at_s")
    )
    for name in fields:
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("kind", ["radiograph", "fluoro", "tomo"])
def test_each_result_kind_round_trips_through_plain_files(run_virtual, tmp_path, kind):
    async def go() -> None:
        room = sim_room()
        room.persistence.persist_to(tmp_path)
        result = await acquire(room, kind)
        names = sorted(p.name for p in tmp_path.glob("acquisition-*"))
        assert names == ["acquisition-001.json", "acquisition-001.npz"]
        # plain data: the metadata is JSON, the pixels load without pickle
        meta = json.loads((tmp_path / "acquisition-001.json").read_text())
        assert meta["kind"] == kind
        with np.load(tmp_path / "acquisition-001.npz", allow_pickle=False) as npz:
            assert len(npz.files) == len(meta["frames"])
        # a restarted controller's room reads them back as they were
        again = sim_room()
        again.persistence.persist_to(tmp_path)
        found = again.persistence.recover_acquisitions(0.0)
        assert [k for k, _ in found] == [kind]
        same_result(found[0][1], result)
        assert again.persistence.refused == []

    run_virtual(go)


class _Hostile:
    """Unpickling this creates a marker file: proof that code from the folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def plant_hostile_files(folder: Path, marker: Path) -> list[str]:
    payload = pickle.dumps({"kind": "radiograph", "result": _Hostile(marker)})
    planted = {
        "acquisition-000.pkl": payload,  # what the old simulator wrote, and would unpickle
        "acquisition-007.pkl": payload,
        "acquisition-008.npz": payload,  # a pickle posing as pixels, without metadata
        "acquisition-009.json": b"{not json",
        "acquisition-010.json": json.dumps({"format": "something else"}).encode(),
    }
    for name, data in planted.items():
        (folder / name).write_bytes(data)
    # metadata in the simulator's own format whose pixels are a pickled object array
    np.savez(folder / "acquisition-011.npz", frame0=np.array([_Hostile(marker)], dtype=object))
    good = json.loads((folder / "acquisition-001.json").read_text())
    digest = hashlib.sha256((folder / "acquisition-011.npz").read_bytes())
    good |= {"pixels": "acquisition-011.npz", "sha256": digest.hexdigest()}
    (folder / "acquisition-011.json").write_text(json.dumps(good))
    # a real acquisition's metadata pointing at pixels that are not the recorded ones
    (folder / "acquisition-012.npz").write_bytes((folder / "acquisition-001.npz").read_bytes())
    tampered = json.loads((folder / "acquisition-001.json").read_text())
    tampered |= {"pixels": "acquisition-012.npz", "sha256": "0" * 64}
    (folder / "acquisition-012.json").write_text(json.dumps(tampered))
    return [*planted, "acquisition-011.json", "acquisition-012.json"]


def test_a_hostile_file_in_sim_state_is_never_executed_and_recovery_still_works(
    run_virtual, tmp_path, caplog
):
    marker = tmp_path / "code-ran"
    folder = tmp_path / "sim-state"

    async def go() -> None:
        room = sim_room()
        room.persistence.persist_to(folder)
        frame = await acquire(room, "radiograph")
        planted = plant_hostile_files(folder, marker)
        again = sim_room()
        again.persistence.persist_to(folder)
        with caplog.at_level(logging.WARNING, logger="hardware_sim.persist"):
            found = again.persistence.recover_acquisitions(0.0)
        assert not marker.exists(), "a file in the exam folder ran code"
        assert [k for k, _ in found] == ["radiograph"]
        same_result(found[0][1], frame)
        refused = sorted(p.name for p, _ in again.persistence.refused)
        assert refused == sorted(planted), again.persistence.refused
        for name in planted:
            assert name in caplog.text
        # and the next acquisition gets a fresh number: nothing is overwritten
        await acquire(again, "radiograph")
        assert (folder / "acquisition-013.json").exists()
        assert not marker.exists()

    run_virtual(go)


def test_an_unreadable_saved_room_state_is_refused_with_the_file_named(run_virtual, tmp_path):
    async def go() -> None:
        (tmp_path / STATE_FILE).write_text('{"patient": ')
        with pytest.raises(ConfigError, match=re.escape(str(tmp_path / STATE_FILE))):
            sim_room(restore_from=str(tmp_path))
        (tmp_path / STATE_FILE).write_text('{"patient": {}}')
        with pytest.raises(ConfigError, match="saved state cannot be restored"):
            sim_room(restore_from=str(tmp_path))

    run_virtual(go)


def test_no_code_path_imports_pickle():
    pattern = re.compile(
        r"^\s*(import\s+(c?pickle|dill|shelve)\b|from\s+(c?pickle|dill|shelve)\b)"
        r"|allow_pickle\s*=\s*True|read_pickle",
        re.M,
    )
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("drivers", "scheduler", "hardware_sim")
        for path in (ROOT / package).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# -- through a real crash: kill -9 between the exposure and its DICOM file, then resume ------

PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"


def test_a_film_exposed_before_a_crash_is_recovered_from_plain_files_among_hostile_ones(
    tmp_path,
):
    reference = tmp_path / "reference"
    assert cli("run", str(PROTOCOL), "--out", str(reference)).returncode == 0
    # the 4-min film's exposure is journaled; its DICOM file is not written yet
    n = next(
        e["seq"] for e in journal(reference) if e["kind"] == "exposure" and e["step"] == "film-4min"
    )
    out = tmp_path / "exam"
    crashed = cli("run", str(PROTOCOL), "--out", str(out), crash_after=n)
    assert crashed.returncode == -signal.SIGKILL
    assert not list(out.glob("*film-4min.dcm"))
    marker = tmp_path / "code-ran"
    for name in ("acquisition-000.pkl", "acquisition-099.pkl"):
        (out / "sim-state" / name).write_bytes(
            pickle.dumps({"kind": "radiograph", "result": _Hostile(marker)})
        )
    resumed = cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not marker.exists(), "a file in the exam folder ran code"
    events = journal(out)
    recovered = [e["step"] for e in events if e["kind"] == "capture_recovered"]
    assert recovered == ["film-4min"]
    exposures = [e for e in events if e["kind"] == "exposure" and e["step"] == "film-4min"]
    assert len(exposures) == 1, "the film was exposed again"
    ours = sorted(p.name for p in out.glob("*.dcm"))
    assert ours == sorted(p.name for p in reference.glob("*.dcm"))
