"""Linear tomosynthesis / nephrotomography (hardware_sim/physics/tomo.py; note §1.3, §5.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hardware_sim.physics import (
    DetectorModel,
    Finding,
    ImagingChain,
    PatientBuild,
    Phantom,
    RenderedImage,
    TechniqueParams,
    ViewGeometry,
)
from hardware_sim.physics.imaging import POSITION_ANGLES_DEG
from hardware_sim.physics.tomo import (
    SweepSpec,
    TomoResult,
    acquire_sweep,
    field_mask,
    layer_warp,
    shift_and_add,
    sweep_angles,
    sweep_geometry,
    tomosynthesis,
)

AP_MM = 220.0
STONE_H_MM = 90.0  # above the table top
STONE_XZ = (60.0, 100.0)
STONE = (STONE_XZ[0], STONE_H_MM - AP_MM / 2.0, STONE_XZ[1])  # patient frame (supine)
VIEW = ViewGeometry(centre_z_mm=100.0, field_height_mm=300.0)
SPEC = SweepSpec(sweep_deg=30.0, projections=25, fulcrum_height_mm=90.0)
TECH = TechniqueParams(kvp=72.0, mas=32.0)  # the whole sweep's


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    build = PatientBuild(
        seed=1, ap_thickness_cm=AP_MM / 10.0, findings=(Finding("stone", STONE, 6.0),)
    )
    return Phantom(build)


@pytest.fixture(scope="module")
def chain(phantom: Phantom) -> ImagingChain:
    det = DetectorModel(rows=512, cols=512, pixel_mm=0.834, seed=2)
    return ImagingChain(phantom, det, seed=2)


@pytest.fixture(scope="module")
def result(chain: ImagingChain) -> TomoResult:
    heights = (STONE_H_MM - 20.0, STONE_H_MM, STONE_H_MM + 20.0)
    return tomosynthesis(chain, VIEW, TECH, SPEC, heights, {})


@pytest.fixture(scope="module")
def images(chain: ImagingChain) -> list[RenderedImage]:
    return acquire_sweep(chain, VIEW, TECH, SPEC, {})


def room_to_patient(
    phantom: Phantom, position: str, x: float, h: float, z: float
) -> tuple[float, float, float]:
    """A point ``h`` mm above the table top (room frame) in the patient frame (as imaging.py)."""
    phi = POSITION_ANGLES_DEG[position]
    ext = phantom.body_half_extent_mm(phi)
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    p = rz.T @ np.array([x, h - ext, z])  # room y relative to the body centre: h − ext
    return float(p[0]), float(p[1]), float(p[2])


def stone_contrast(chain: ImagingChain, layer: np.ndarray) -> float:
    """1 − (stone centre / surrounding ring) in the offset-corrected layer."""
    r, c = (round(v) for v in chain.project(sweep_geometry(VIEW, SPEC, 0.0), STONE))
    a = layer.astype(float) - chain.detector.offset_map()
    ring = np.concatenate(
        [a[r - 30 : r - 15, c - 15 : c + 15].ravel(), a[r + 15 : r + 30, c - 15 : c + 15].ravel(),
         a[r - 15 : r + 15, c - 30 : c - 15].ravel(), a[r - 15 : r + 15, c + 15 : c + 30].ravel()]
    )  # fmt: skip
    centre = a[r - 1 : r + 2, c - 1 : c + 2].mean()
    return float(1.0 - centre / np.median(ring))


def test_sweep_angles_symmetric_and_counted() -> None:
    for n in (1, 2, 25, 41):
        spec = SweepSpec(sweep_deg=40.0, projections=n)
        a = sweep_angles(spec)
        assert len(a) == n
        assert a == pytest.approx([-x for x in reversed(a)], abs=1e-12)
        assert np.all(np.diff(a) > 0)
        if n > 1:
            assert a[0] == pytest.approx(-20.0) and a[-1] == pytest.approx(20.0)
    assert sweep_angles(SweepSpec(projections=25))[12] == 0.0
    with pytest.raises(ValueError):
        SweepSpec(projections=0)


@pytest.mark.parametrize("position", ["supine", "prone", "lpo"])
def test_shifts_match_the_projector(phantom: Phantom, chain: ImagingChain, position: str) -> None:
    # the analytic plane → detector mapping equals ImagingChain.project for every angle
    g = ViewGeometry(
        patient_position=position, centre_z_mm=110.0, centre_x_mm=15.0, tube_angle_deg=5.0
    )
    det = chain.detector
    ref = sweep_geometry(g, SPEC, 0.0)
    for h in (40.0, 90.0, 140.0):
        for ang in sweep_angles(SPEC):
            warp = layer_warp(g, SPEC, ang, h, (det.rows, det.cols), det.pixel_mm)
            for x, z in ((30.0, 80.0), (-70.0, 160.0)):
                p = room_to_patient(phantom, position, x, h, z)
                r0, c0 = chain.project(ref, p)
                rk, ck = chain.project(sweep_geometry(g, SPEC, ang), p)
                col, row = warp @ np.array([c0, r0, 1.0])
                assert (row, col) == pytest.approx((rk, ck), abs=1e-6)
    # the fulcrum plane never shifts: the centre of the field stays put
    w = layer_warp(g, SPEC, 15.0, SPEC.fulcrum_height_mm, (det.rows, det.cols), det.pixel_mm)
    centre = np.array([det.cols / 2 - 0.5, det.rows / 2 - 0.5, 1.0])
    assert w @ centre == pytest.approx(centre[:2], abs=1e-9)


def test_layers_count_shape_and_scale(chain: ImagingChain, result: TomoResult) -> None:
    det = chain.detector
    assert len(result.layers) == 3
    assert result.heights_mm == (70.0, 90.0, 110.0)
    assert result.projections == 25 and result.sweep_deg == 30.0
    assert result.pixel_spacing_mm == det.pixel_mm
    for layer in result.layers:
        assert layer.shape == (det.rows, det.cols) and layer.dtype == np.uint16
    # same value scale as a raw radiograph at the sweep's whole technique (in-plane structures
    # integrate all projections): body signal within 10 % of a single exposure's
    single = chain.render(sweep_geometry(VIEW, SPEC, 0.0), TECH, {}).pixels.astype(float)
    off = det.offset_map()
    sl = (slice(200, 312), slice(200, 312))
    ratio = np.median(result.layers[1][sl] - off[sl]) / np.median(single[sl] - off[sl])
    assert ratio == pytest.approx(1.0, rel=0.10)
    # a layer fills the collimated field like one exposure (no dark seam at its edge, even 2 cm
    # from the fulcrum where the projections' fields are shifted), and is dark outside it
    field = field_mask(VIEW, (det.rows, det.cols), det.pixel_mm, margin_px=0.0) > 0
    for layer in result.layers:
        sig = layer.astype(float) - off
        assert sig[field].min() > 0.05 * float(np.median(sig[field]))  # a seam would be ~0
        assert float(np.abs(sig[~field]).max()) < 1.0


def test_in_plane_stone_is_sharper(chain: ImagingChain, result: TomoResult) -> None:
    below, focal, above = (stone_contrast(chain, layer) for layer in result.layers)
    assert focal > 0.05  # a 6-mm calcium-oxalate stone behind ~22 cm of abdomen
    # 2 cm off the focal plane a ±15° sweep smears it over ≈ 12 mm along z: contrast roughly halves
    assert below < 0.7 * focal
    assert above < 0.7 * focal


def test_stone_profile_is_narrower_in_plane(chain: ImagingChain, result: TomoResult) -> None:
    # along z (rows: the direction of tube motion) the stone's profile is widest off-plane
    r, c = (round(v) for v in chain.project(sweep_geometry(VIEW, SPEC, 0.0), STONE))
    off = chain.detector.offset_map()

    def fwhm(layer: np.ndarray) -> float:
        col = (layer.astype(float) - off)[r - 30 : r + 31, c - 1 : c + 2].mean(axis=1)
        base = np.median(np.r_[col[:10], col[-10:]])
        dip = base - col
        return float(np.count_nonzero(dip >= 0.5 * dip.max()))

    below, focal, above = (fwhm(layer) for layer in result.layers)
    assert focal < below and focal < above


def test_dose_is_the_sum_of_the_projections(
    chain: ImagingChain, result: TomoResult, images: list[RenderedImage]
) -> None:
    assert len(images) == SPEC.projections
    assert result.dap_gy_cm2 == pytest.approx(sum(i.dap_gy_cm2 for i in images), rel=1e-12)
    assert result.entrance_air_kerma_mgy == pytest.approx(
        sum(i.entrance_air_kerma_mgy for i in images), rel=1e-12
    )
    assert result.reference_air_kerma_mgy == pytest.approx(
        sum(i.reference_air_kerma_mgy for i in images), rel=1e-12
    )
    # the mAs is split: the sweep costs about one radiograph at the same technique
    one = chain.render(VIEW, TECH, {})
    assert result.dap_gy_cm2 == pytest.approx(one.dap_gy_cm2, rel=1e-9)
    assert result.entrance_air_kerma_mgy == pytest.approx(one.entrance_air_kerma_mgy, rel=0.10)


def test_log_and_linear_agree_in_plane(chain: ImagingChain, images: list[RenderedImage]) -> None:
    off = chain.detector.offset_map()
    projs = [np.maximum(i.pixels.astype(np.float32) - off, 0.0) for i in images]
    angles = sweep_angles(SPEC)
    px = chain.detector.pixel_mm
    lin = shift_and_add(projs, angles, STONE_H_MM, SPEC, VIEW, px)
    log = shift_and_add(projs, angles, STONE_H_MM, SPEC, VIEW, px, domain="log")
    sl = (slice(200, 312), slice(200, 312))
    assert np.median(log[sl] / lin[sl]) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError):
        shift_and_add(projs, angles[:-1], 90.0, SPEC, VIEW, px)
