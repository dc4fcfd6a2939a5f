"""The scenario renderer (hardware_sim/render.py) and the phantom's voxelisation."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardware_sim.physics import ContrastKinetics, DetectorModel, PatientBuild, Phantom
from hardware_sim.render import SHEET_TILE_PX, render_scenario

ROOT = Path(__file__).resolve().parents[2]
TIMES = (0.0, 300.0, 900.0)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[str]]:
    out = tmp_path_factory.mktemp("render")
    messages: list[str] = []
    paths = render_scenario(
        ROOT / "configs" / "patients" / "normal.yaml",
        out,
        times_s=TIMES,
        progress=messages.append,
    )
    return out, paths, messages


def test_writes_the_series(rendered: tuple[Path, list[Path], list[str]]) -> None:
    out, paths, messages = rendered
    names = [p.name for p in paths]
    assert names == [
        "00-scout.png",
        "nephrotomo-60s.png",
        "01-5min.png",
        "02-15min.png",
        "03-voiding.png",
        "04-post-void.png",
        "contact-sheet.png",
        "curves.csv",
        "curves.png",
    ]
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths)
    assert len(messages) >= len(paths)
    det = DetectorModel()
    for p in paths:
        if p.suffix != ".png":
            continue
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img is not None, p
        if p.name == "curves.png":
            assert img.shape[0] > 300 and img.shape[1] > 500
        elif p.name == "contact-sheet.png":  # the five films, four across
            assert img.shape == (2 * SHEET_TILE_PX, 4 * SHEET_TILE_PX)
        elif p.name.startswith("nephrotomo"):
            assert img.shape == (40 + 512, 3 * 512)  # title band + three 512² layers
        else:
            assert img.shape == (det.rows, det.cols) and img.dtype == np.uint8
            assert img.std() > 10.0  # not blank
            assert img[:60].max() == 255  # the label is burnt in


def test_curves_csv(rendered: tuple[Path, list[Path], list[str]]) -> None:
    out, _, _ = rendered
    with (out / "curves.csv").open() as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], np.asarray(rows[1:], dtype=float)
    assert header == ["time_s", *ContrastKinetics.COMPARTMENTS]
    t = data[:, 0]
    assert t[0] == 0.0 and t[-1] >= 3600.0
    assert np.all(np.diff(t) > 0)
    assert set(TIMES) <= set(t.tolist())
    # the bladder fills with contrast until the void (after the last film, at 15 min) ...
    bladder = data[:, header.index("bladder")]
    before = bladder[t <= TIMES[-1]]
    assert np.all(np.diff(before) >= -1e-9)
    assert before[-1] > 10.0
    # ... plasma peaks in the first minute and falls
    plasma = data[:, header.index("plasma")]
    assert int(np.argmax(plasma)) < np.searchsorted(t, 60.0)
    assert plasma[-1] < 0.5 * plasma[np.searchsorted(t, 120.0)]


def test_voxelized_kidneys_and_spine() -> None:
    phantom = Phantom(PatientBuild(seed=1))
    labels, materials, origin, spacing = phantom.voxelize(2.0)
    assert spacing == 2.0 and labels.dtype == np.uint8
    assert materials[0] == "air"
    assert {"adipose", "soft_tissue", "bone", "bone_trabecular", "kidney"} <= set(materials)
    x = origin[0] + spacing * np.arange(labels.shape[0])
    voxel_ml = spacing**3 / 1000.0
    kidney = labels == materials.index("kidney")
    for side, sel in (("left", x > 0), ("right", x < 0)):
        # analytic kidney material: the kidney ellipsoid minus its renal-sinus fat (inside it)
        k, s = (p for p in phantom.primitives if p.name in ("kidney", "renal sinus") and
                np.sign(p.centre[0]) == (1 if side == "left" else -1))  # fmt: skip
        expected = 4.0 / 3.0 * math.pi * (np.prod(k.semi_axes) - np.prod(s.semi_axes)) / 1000.0
        assert kidney[sel].sum() * voxel_ml == pytest.approx(expected, rel=0.10)
    # spine at the midline: bone at x = 0 through the lumbar vertebral bodies
    i0 = int(np.argmin(np.abs(x)))
    l1 = phantom.landmarks["L1"]
    j = round((l1[1] - origin[1]) / spacing)
    k = round((l1[2] - origin[2]) / spacing)
    bone = {materials.index("bone"), materials.index("bone_trabecular")}
    assert int(labels[i0, j, k]) in bone
    column = labels[i0, j, :]
    assert np.isin(column, list(bone)).sum() * spacing > 150.0  # T11–L5 bodies along z
    # and none far lateral of the spine at that level
    assert int(labels[int(np.argmin(np.abs(x - 60.0))), j, k]) not in bone
