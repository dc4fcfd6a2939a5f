"""Fast frame synthesis (ImagingChain(fast=True)) against the exact bin-by-bin path.

Behaviour only (no timing; see bench/bench_synthesis.py for the rate).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hardware_sim.physics import (
    ContrastKinetics,
    DetectorModel,
    ImagingChain,
    KineticsParams,
    PatientBuild,
    Phantom,
    TechniqueParams,
    ViewGeometry,
)
from hardware_sim.physics.detector import NoiseBank, apply_lsf

KUB = ViewGeometry()
FILM = TechniqueParams(kvp=72.0, mas=32.0)
PULSE = TechniqueParams(kvp=75.0, mas=0.2)  # one fluoroscopy pulse
BINNED = DetectorModel(rows=512, cols=512, pixel_mm=0.834, seed=2)


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return Phantom(PatientBuild(seed=1))


@pytest.fixture(scope="module")
def late() -> ContrastKinetics:
    """15 min after 15 g of iodine: dense calyces, ureters and bladder."""
    k = ContrastKinetics(KineticsParams())
    k.advance(40.0, 15000.0 / 40.0)
    k.advance_to(900.0)
    return k


@pytest.fixture(scope="module")
def fast(phantom: Phantom) -> ImagingChain:
    return ImagingChain(phantom, BINNED, seed=3)


@pytest.fixture(scope="module")
def exact(phantom: Phantom) -> ImagingChain:
    return ImagingChain(phantom, BINNED, seed=4, fast=False)


def scene(k: ContrastKinetics) -> tuple[dict[str, float], dict[str, float], float]:
    return k.concentrations_mg_ml(), k.volumes_ml(), k.time_s


def inner_body(exact_mean: np.ndarray) -> np.ndarray:
    """Exposed, non-direct-beam pixels away from the collimator edges."""
    body = exact_mean > 0.02 * float(exact_mean.max())
    return cv2.erode(body.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0


def box(a: np.ndarray, rc: tuple[float, float], half: int) -> np.ndarray:
    r, c = round(rc[0]), round(rc[1])
    return a[r - half : r + half, c - half : c + half].astype(float)


def densest_iodine(chain: ImagingChain, k: ContrastKinetics) -> tuple[float, float, float]:
    """(row, col) on the panel of the highest iodine areal density, and that density."""
    c, v, t = scene(k)
    vm = chain._view(KUB)
    areal = chain._iodine_areal_mg_cm2(vm, c, v, t)
    i, j = np.unravel_index(int(np.argmax(areal)), areal.shape)
    f = chain.detector.rows / vm.grid_rows
    return (i + 0.5) * f - 0.5, (j + 0.5) * f - 0.5, float(areal[i, j])


# -- mean signal ----------------------------------------------------------------------------
@pytest.mark.parametrize("panel", [BINNED, DetectorModel(seed=2)], ids=["512", "1024"])
def test_fast_mean_matches_exact(phantom: Phantom, late: ContrastKinetics, panel: DetectorModel):
    chain = ImagingChain(phantom, panel, seed=3)
    c, v, t = scene(late)
    ex, k_ex = chain.mean_signal(KUB, FILM, c, v, t, method="exact")
    fa, k_fa = chain.mean_signal(KUB, FILM, c, v, t, method="fast")
    inner = inner_body(ex)
    rel = fa[inner] / ex[inner] - 1.0
    assert abs(float(rel.mean())) < 0.002  # no bias
    assert float(np.abs(rel).mean()) < 0.01  # pixel by pixel, in the body
    assert k_fa == pytest.approx(k_ex, rel=0.01)
    # the densest iodine (bladder at 15 min, > 100 mg/cm²) and the bladder as a whole
    r, col, areal = densest_iodine(chain, late)
    assert areal > 100.0
    assert box(fa, (r, col), 2).mean() / box(ex, (r, col), 2).mean() == pytest.approx(1, abs=0.03)
    bl = chain.project(KUB, phantom.bladder_primitive(v["bladder"]).centre)
    half = panel.rows // 64
    assert box(fa, bl, half).mean() / box(ex, bl, half).mean() == pytest.approx(1, abs=0.03)


def test_without_light_spread_the_model_is_all_that_differs(phantom: Phantom, late):
    """Gauss quadrature vs the energy bins: < 0.1 % everywhere, iodine included."""
    chain = ImagingChain(phantom, DetectorModel(rows=256, cols=256, pixel_mm=1.668, blur_px=0))
    c, v, t = scene(late)
    ex, _ = chain.mean_signal(KUB, FILM, c, v, t, method="exact")
    fa, _ = chain.mean_signal(KUB, FILM, c, v, t, method="fast")
    inner = inner_body(ex)
    assert float(np.abs(fa[inner] / ex[inner] - 1.0).max()) < 1e-3


def test_iodine_contrast_is_kept(fast: ImagingChain, exact: ImagingChain, late):
    """Contrast (iodine vs none) of the densest iodine, fast vs exact."""
    c, v, t = scene(late)
    zero = dict.fromkeys(c, 0.0)
    r, col, _ = densest_iodine(fast, late)
    ratios = []
    for chain, method in ((exact, "exact"), (fast, "fast")):
        with_i, _ = chain.mean_signal(KUB, PULSE, c, v, t, method=method)
        plain, _ = chain.mean_signal(KUB, PULSE, zero, v, t, method=method)
        ratios.append(box(with_i, (r, col), 2).mean() / box(plain, (r, col), 2).mean())
    assert ratios[0] < 0.6  # strongly attenuating
    assert ratios[1] == pytest.approx(ratios[0], abs=0.01)


# -- frames: path selection, noise, dose ------------------------------------------------------
def test_render_goes_fast_from_the_second_frame_of_a_view(phantom: Phantom, late):
    chain = ImagingChain(phantom, DetectorModel(rows=256, cols=256, pixel_mm=1.668))
    c, v, t = scene(late)
    chain.render(KUB, PULSE, c, v, t)
    assert not chain._synth  # a one-off view (tomography, a single film) stays exact
    chain.render(KUB, PULSE, c, v, t)
    assert chain._synth
    slow = ImagingChain(phantom, DetectorModel(rows=256, cols=256, pixel_mm=1.668), fast=False)
    for _ in range(3):
        slow.render(KUB, PULSE, c, v, t)
    assert not slow._synth


def frame_noise(chain: ImagingChain, k, rois: list[tuple[float, float]], pairs: int = 4):
    """Per box: (mean above offset, noise σ from frame differences, averaged over pairs)."""
    c, v, t = scene(k)
    chain.render(KUB, PULSE, c, v, t)  # a view's first frame is exact: take the next ones
    frames = [chain.render(KUB, PULSE, c, v, t).pixels.astype(float) for _ in range(2 * pairs)]
    out = []
    for rc in rois:
        boxes = [box(f, rc, 16) for f in frames]
        mean = float(np.mean([b.mean() for b in boxes])) - BINNED.offset_counts
        sd = [np.std(boxes[2 * i] - boxes[2 * i + 1]) / np.sqrt(2.0) for i in range(pairs)]
        out.append((mean, float(np.mean(sd))))
    return out


@pytest.mark.parametrize("noise_bank", [True, False], ids=["bank", "fresh"])
def test_noise_matches_exact(phantom: Phantom, exact: ImagingChain, late, noise_bank: bool):
    chain = ImagingChain(phantom, BINNED, seed=5, noise_bank=noise_bank)
    flank = chain.project(KUB, (-120.0, 0.0, 40.0))
    spine = chain.project(KUB, phantom.landmarks["L4"])
    bladder = chain.project(KUB, phantom.bladder_primitive(late.volumes_ml()["bladder"]).centre)
    rois = [flank, spine, bladder]  # soft tissue, bone, the densest iodine
    for (m_f, s_f), (m_e, s_e) in zip(
        frame_noise(chain, late, rois), frame_noise(exact, late, rois), strict=True
    ):
        assert m_f == pytest.approx(m_e, rel=0.02)
        assert s_f == pytest.approx(s_e, rel=0.10)


def test_electronic_noise_alone_outside_the_field(phantom: Phantom, late):
    """Collimated-out columns read the offset plus the electronic noise, as exact."""
    narrow = ViewGeometry(field_width_mm=250.0)
    c, v, t = scene(late)
    sd = []
    for fast in (True, False):
        chain = ImagingChain(phantom, BINNED, seed=6, fast=fast)
        frames = [chain.render(narrow, PULSE, c, v, t).pixels.astype(float) for _ in range(3)]
        d = frames[2][:, :40] - frames[1][:, :40]  # no fixed pattern
        assert abs(float(frames[2][:, :40].mean()) - BINNED.offset_counts) < 5.0
        sd.append(float(d.std()) / np.sqrt(2.0))
    read = BINNED.electronic_noise_e / BINNED.electrons_per_count
    rounding = 1.0 / np.sqrt(12.0)
    assert sd[0] == pytest.approx(sd[1], rel=0.15)
    assert sd[1] == pytest.approx(np.hypot(read, rounding), rel=0.15)


def test_dose_and_detector_kerma_as_exact(fast: ImagingChain, exact: ImagingChain, late):
    c, v, t = scene(late)
    fast.render(KUB, PULSE, c, v, t)
    f = fast.render(KUB, PULSE, c, v, t)
    e = exact.render(KUB, PULSE, c, v, t)
    assert f.pixels.dtype == np.uint16 and f.pixels.shape == (512, 512)
    assert f.pixel_spacing_mm == e.pixel_spacing_mm
    assert f.dap_gy_cm2 == pytest.approx(e.dap_gy_cm2, rel=1e-9)
    assert f.entrance_air_kerma_mgy == pytest.approx(e.entrance_air_kerma_mgy, rel=1e-9)
    assert f.reference_air_kerma_mgy == pytest.approx(e.reference_air_kerma_mgy, rel=1e-9)
    assert f.detector_kerma_ugy == pytest.approx(e.detector_kerma_ugy, rel=0.01)


def test_fast_frames_follow_the_contrast(fast: ImagingChain, phantom: Phantom):
    """A run of frames: the bladder fills and darkens the raw image; peristalsis moves."""
    k = ContrastKinetics(KineticsParams())
    k.advance(40.0, 15000.0 / 40.0)
    k.advance_to(300.0)
    c, v, t = scene(k)
    fast.render(KUB, PULSE, c, v, t)
    early = fast.render(KUB, PULSE, c, v, t).pixels.astype(float)
    k.advance_to(1200.0)
    c, v, t = scene(k)
    fast.render(KUB, PULSE, c, v, t)
    late_px = fast.render(KUB, PULSE, c, v, t).pixels.astype(float)
    bl = fast.project(KUB, phantom.bladder_primitive(v["bladder"]).centre)
    assert box(late_px, bl, 10).mean() < box(early, bl, 10).mean() - 5.0
    m1, _ = fast.mean_signal(KUB, PULSE, c, v, t)
    m2, _ = fast.mean_signal(KUB, PULSE, c, v, t + 7.0)
    assert float(np.max(np.abs(m1 - m2) / np.maximum(m1, 1.0))) > 0.05  # a bolus moved


def test_same_seed_same_fast_frames(phantom: Phantom, late):
    c, v, t = scene(late)
    frames = []
    for seed in (7, 7, 8):
        ch = ImagingChain(phantom, DetectorModel(rows=256, cols=256, pixel_mm=1.668), seed=seed)
        ch.render(KUB, PULSE, c, v, t)
        frames.append(ch.render(KUB, PULSE, c, v, t).pixels)
    assert np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])


# -- the noise bank ---------------------------------------------------------------------------
def test_noise_bank_has_the_light_spread_correlation():
    det = DetectorModel(rows=256, cols=256)
    bank = NoiseBank(det, seed=1)
    white = np.random.default_rng(0).standard_normal((2048, 256)).astype(np.float32)
    ref = apply_lsf(white, det.lsf_kernel())

    def corr(a: np.ndarray, dr: int, dc: int) -> float:
        a = a - a.mean()
        h, w = a.shape
        return float((a[: h - dr, : w - dc] * a[dr:, dc:]).mean() / a.var())

    q = bank.draw(3)
    assert np.array_equal(q, bank.draw(3))  # deterministic per key
    assert float(q.var()) == pytest.approx(det.blurred_noise_variance(), rel=0.05)
    assert float(q.var()) == pytest.approx(float(ref.var()), rel=0.05)
    for dr, dc in ((0, 1), (1, 0), (1, 1), (0, 2)):
        assert corr(q, dr, dc) == pytest.approx(corr(ref, dr, dc), abs=0.03)
    # different frames: different windows, uncorrelated pixel by pixel
    others = [bank.draw(k) for k in range(4, 12)]
    cc = [float(np.corrcoef(q.ravel(), o.ravel())[0, 1]) for o in others]
    assert max(abs(x) for x in cc) < 0.05
