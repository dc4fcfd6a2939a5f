"""The recursive filter lowers a static scene's noise variance to α/(2−α) of a frame's, and
a fluoroscopy run stored through the chain carries that reduction; its last frame is held."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.carm import PANEL_CORRECTIONS
from scheduler.imaging import HostImageChain, ImageChainOptions, RecursiveFilter, variance_factor
from scheduler.imaging.chain import HELD_NOTE

from .stored import record_of

SETTLE = 30  # frames after which (1−α)^(2k) is negligible for α ≥ 0.25


def _static_run(n: int, sigma: float = 40.0) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [
        np.rint(2000.0 + sigma * rng.standard_normal((128, 128))).astype(np.uint16)
        for _ in range(n)
    ]


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_variance_factor_on_a_static_scene(alpha: float) -> None:
    frames = _static_run(SETTLE + 30)
    f = RecursiveFilter(alpha)
    out = [f(x).astype(np.float64) for x in frames]
    # uniform scene, noise white in space and the filter per pixel: a settled frame's
    # spatial variance is its noise variance (16k pixels: ±2 % sampling error)
    measured = np.mean(
        [out[k].var() / frames[k].astype(np.float64).var() for k in range(SETTLE, len(frames))]
    )
    assert measured == pytest.approx(variance_factor(alpha), rel=0.08)


def test_motion_adaptive_follows_a_moving_edge() -> None:
    still = np.full((32, 32), 1000, np.uint16)
    moved = still.copy()
    moved[:, 16:] = 3000
    f = RecursiveFilter(0.25, motion_threshold=500.0)
    f(still)
    out = f(moved)
    assert int(out[0, 20]) == 3000  # followed at once, not smeared to 1500
    assert int(out[0, 4]) == 1000


def test_fluoro_run_through_the_chain_is_filtered_and_held() -> None:
    frames = _static_run(SETTLE + 20)
    chain = HostImageChain(
        ImageChainOptions(temporal_alpha=0.5, store_last_image_hold=True),
        frozenset(),  # a panel that corrects on board: the chain only filters
        None,
    )
    assert PANEL_CORRECTIONS  # (what such a panel declares)
    image = chain.develop(record_of(frames, kind="fluoro"))
    shown = image.presentation.frames
    ratio = np.mean(
        [
            shown[k].pixels.astype(np.float64).var() / frames[k].astype(np.float64).var()
            for k in range(SETTLE, len(frames))
        ]
    )
    assert ratio == pytest.approx(1.0 / 3.0, rel=0.08)
    assert image.held is not None
    assert HELD_NOTE in image.held.notes
    assert np.array_equal(image.held.frames[0].pixels, image.presentation.frames[-1].pixels)


def test_held_image_is_marked_in_dicom(tmp_path) -> None:
    import pydicom

    from scheduler.outputs import write_capture

    from .stored import exam_info

    chain = HostImageChain(ImageChainOptions(store_last_image_hold=True), frozenset(), None)
    image = chain.develop(record_of(_static_run(3), kind="fluoro"))
    assert image.held is not None
    ds = pydicom.dcmread(write_capture(image.held, exam_info(), tmp_path))
    assert "last image hold" in str(ds.ImageComments)
    assert ds.ImageType[0] == "DERIVED"
    assert "last image hold" in str(ds.DerivationDescription)
