"""Anatomical texture the analytic primitives cannot carry: soft-tissue power-law noise and
trabecular bone, as a per-view modulation of the path-length maps (see docs/anatomy.md).

Both are seeded 2-D random fields fixed to the patient (rows along z, columns along x, each on
a coronal plane at a given depth y) and generated once per patient.  For a view, each ray is
followed to where it crosses a plane and the field is read there, so the texture moves with the
patient between views, is magnified like anatomy at that depth and blurs in tomography like a
structure at that height.  Projection stays linear in path length: the texture *exchanges*
path length between two materials, so the total thickness along every ray is unchanged.

* Soft tissue: anatomical background in projection radiographs has a power-law spectrum
  P(f) ∝ 1/f^β with β ≈ 3 (mammograms: β = 2.8 ± 0.5 over 105 images, Burgess, Jacobson &
  Judy, Med Phys 28:419, 2001; β ≈ 3 in mammograms and coronary angiograms, Bochud et al.,
  Med Phys 26:1365, 1999).  Three independent layers (at −¼, 0 and +¼ of the AP thickness)
  with β = :data:`SOFT_BETA` exchange soft tissue and fat (fat lobules, fascia, bowel loops),
  :data:`SOFT_RMS_MM` RMS at the 22-cm reference build (∝ AP thickness), faded out over the
  outer 15 % of the body's width.
* Trabecular bone: band-pass noise around a 2.5-mm period, stronger across x than along z
  (vertical trabeculae dominate a vertebral body in an AP film), on the plane of the spine; it
  exchanges :data:`TRABECULAR_AMPLITUDE` × the ray's spongiosa path between spongiosa and
  marrow (soft tissue), i.e. bone volume fraction varying by that share.  The field is
  low-passed to the ray grid's pitch at that depth, so a coarse grid does not alias it.

Entry point: :func:`apply_texture`, called once per view from the view-map builder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ._geometry import Frame
    from .phantom import Phantom

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

TEXTURE_STREAM = 0x7E7  # second key of the texture's random stream
SOFT_BETA = 2.8
SOFT_F_MIN = 1.0 / 150.0  # cycles/mm: the spectrum flattens below (no body-wide gradient)
SOFT_RMS_MM = 3.0
SOFT_SPACING_MM = 1.0
SOFT_LAYER_DEPTHS = (-0.25, 0.0, 0.25)  # × AP thickness (patient y)
SOFT_EDGE_FADE = 0.15  # fraction of the half-width over which the texture fades at the sides
TRABECULAR_PERIOD_MM = 2.5
TRABECULAR_BANDWIDTH = 0.15  # cycles/mm (Gaussian σ of the radial band)
TRABECULAR_VERTICAL = 0.7  # share of the power in vertical (along-z) trabeculae
TRABECULAR_AMPLITUDE = 0.12
TRABECULAR_SPACING_MM = 0.5


@dataclass(frozen=True)
class PlaneField:
    """A 2-D field on the coronal plane y = ``plane_y``: ``values[row, col]`` at
    x = x0 + col·spacing, z = z0 + row·spacing (unit RMS)."""

    values: F32
    x0: float
    z0: float
    spacing_mm: float
    plane_y: float


@dataclass(frozen=True)
class Texture:
    soft: tuple[PlaneField, ...]
    trabecular: PlaneField
    soft_rms_mm: float


def power_law_field(
    shape: tuple[int, int], spacing_mm: float, beta: float, f_min: float, rng: np.random.Generator
) -> F32:
    """Gaussian noise with power spectrum ∝ (f² + f_min²)^(−β/2), unit RMS (periodic)."""
    fy = np.fft.fftfreq(shape[0], spacing_mm)[:, None]
    fx = np.fft.rfftfreq(shape[1], spacing_mm)[None, :]
    amp = (fx * fx + fy * fy + f_min * f_min) ** (-beta / 4.0)
    amp[0, 0] = 0.0  # zero mean
    spec = np.fft.rfft2(rng.standard_normal(shape)) * amp
    out = np.fft.irfft2(spec, s=shape)
    res: F32 = (out / out.std()).astype(np.float32)
    return res


def trabecular_field(shape: tuple[int, int], spacing_mm: float, rng: np.random.Generator) -> F32:
    """Band-pass noise at :data:`TRABECULAR_PERIOD_MM`, anisotropic (columns = x, rows = z):
    :data:`TRABECULAR_VERTICAL` of the power in stripes running along z.  Unit RMS, clipped
    to ±3 (so that the spongiosa path stays positive)."""
    fy = np.fft.fftfreq(shape[0], spacing_mm)[:, None]
    fx = np.fft.rfftfreq(shape[1], spacing_mm)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    band = np.exp(-0.5 * ((f - 1.0 / TRABECULAR_PERIOD_MM) / TRABECULAR_BANDWIDTH) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos2 = np.where(f > 0, (fx / np.maximum(f, 1e-12)) ** 2, 0.0)
    w = TRABECULAR_VERTICAL * cos2**4 + (1.0 - TRABECULAR_VERTICAL) * (1.0 - cos2) ** 4
    spec = np.fft.rfft2(rng.standard_normal(shape)) * np.sqrt(band * w)
    out = np.fft.irfft2(spec, s=shape)
    res: F32 = np.clip(out / out.std(), -3.0, 3.0).astype(np.float32)
    return res


@lru_cache(maxsize=8)
def _texture(
    seed: int,
    width_mm: float,
    ap_mm: float,
    z_range: tuple[float, float],
    bone_z_range: tuple[float, float],
    y_spine: float,
) -> Texture:
    rng = np.random.default_rng([seed, TEXTURE_STREAM])
    z_lo, z_hi = z_range
    half = width_mm / 2.0 + 10.0
    d = SOFT_SPACING_MM
    shape = (math.ceil((z_hi - z_lo) / d) + 1, math.ceil(2.0 * half / d) + 1)
    soft = tuple(
        PlaneField(power_law_field(shape, d, SOFT_BETA, SOFT_F_MIN, rng), -half, z_lo, d, k * ap_mm)
        for k in SOFT_LAYER_DEPTHS
    )
    t = TRABECULAR_SPACING_MM
    tz_lo, tz_hi = bone_z_range
    tshape = (math.ceil((tz_hi - tz_lo) / t) + 1, math.ceil(2.0 * half / t) + 1)
    trab = PlaneField(trabecular_field(tshape, t, rng), -half, tz_lo, t, y_spine)
    return Texture(soft, trab, SOFT_RMS_MM * ap_mm / 220.0)


def patient_texture(phantom: Phantom) -> Texture:
    """The patient's texture fields (cached per seed and body size)."""
    z_lo = min(p.centre[2] - p.semi_axes[2] for p in phantom.primitives if p.name == "body")
    z_hi = max(p.centre[2] + p.semi_axes[2] for p in phantom.primitives if p.name == "body")
    return _texture(
        phantom.build.seed,
        round(phantom.width_mm, 3),
        round(phantom.ap_mm, 3),
        (round(z_lo, 3), round(z_hi, 3)),
        (round(phantom.z(-320.0), 3), round(phantom.z(280.0), 3)),
        round(phantom.y_spine, 3),
    )


def _sample(
    field: PlaneField, src: F64, pts: F64, grid_px_mm: float
) -> tuple[F32, npt.NDArray[np.float64]]:
    """The field where each ray (source → ``pts``) crosses its plane, low-passed to the ray
    grid's pitch there; also the crossing x (for the edge fade)."""
    dy = pts[..., 1] - src[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.abs(dy) > 1e-9, (field.plane_y - src[1]) / dy, np.nan)
    x = src[0] + t * (pts[..., 0] - src[0])
    z = src[2] + t * (pts[..., 2] - src[2])
    ok = (t > 0.0) & (t < 1.0)
    centre = t[t.shape[0] // 2, t.shape[1] // 2]
    pitch = grid_px_mm * (float(centre) if np.isfinite(centre) and centre > 0 else 1.0)
    values = _blurred(field, round(pitch / field.spacing_mm, 2))
    mx = np.where(ok, (x - field.x0) / field.spacing_mm, -10.0).astype(np.float32)
    mz = np.where(ok, (z - field.z0) / field.spacing_mm, -10.0).astype(np.float32)
    out = cv2.remap(values, mx, mz, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0.0)  # fmt: skip
    return np.asarray(out, np.float32), np.where(ok, x, np.inf)


_BLURRED: dict[tuple[int, float], F32] = {}


def _blurred(field: PlaneField, pitch_px: float) -> F32:
    """The field low-passed for sampling every ``pitch_px`` of its pixels (σ = pitch/2)."""
    sigma = 0.5 * pitch_px
    if sigma < 0.7:
        return field.values
    key = (id(field.values), sigma)
    hit = _BLURRED.get(key)
    if hit is None:
        if len(_BLURRED) > 16:
            _BLURRED.clear()
        hit = np.asarray(cv2.GaussianBlur(field.values, (0, 0), sigma), np.float32)
        _BLURRED[key] = hit
    return hit


def apply_texture(
    phantom: Phantom, fr: Frame, u: F64, v: F64, grid_px_mm: float, mats: dict[str, F32]
) -> None:
    """Add the patient's texture to a view's path-length maps ``mats`` (mm per ray grid pixel,
    rows ``v``, columns ``u`` on the detector), in place: soft tissue ↔ fat by the power-law
    layers, spongiosa ↔ marrow by the trabecular field.  Each exchange is limited to half of
    what the ray holds of the material it takes from, so no path length goes negative.
    A phantom without a body (a test object: an edge, a step wedge) gets none."""
    if not any(p.name == "body" for p in phantom.primitives):
        return
    tex = patient_texture(phantom)
    pts = (
        fr.det_centre[None, None, :]
        + u[None, :, None] * fr.ex[None, None, :]
        + v[:, None, None] * fr.ey[None, None, :]
    )
    src = np.asarray(fr.source, dtype=float)
    shape = (len(v), len(u))
    soft = mats.get("soft_tissue")
    fat = mats.get("adipose")
    if soft is not None and fat is not None:
        d = np.zeros(shape, np.float32)
        half_w, half_ap = phantom.width_mm / 2.0, phantom.ap_mm / 2.0
        for layer in tex.soft:
            val, x = _sample(layer, src, pts, grid_px_mm)
            a_y = half_w * math.sqrt(max(1.0 - (layer.plane_y / half_ap) ** 2, 0.0))
            fade = np.clip((1.0 - np.abs(x) / max(a_y, 1e-6)) / SOFT_EDGE_FADE, 0.0, 1.0)
            d += val * fade.astype(np.float32)
        d *= np.float32(tex.soft_rms_mm / math.sqrt(len(tex.soft)))
        np.clip(d, -0.5 * np.maximum(soft, 0.0), 0.5 * np.maximum(fat, 0.0), out=d)
        soft += d
        fat -= d
    trab = mats.get("bone_trabecular")
    if trab is not None and soft is not None:
        val, _ = _sample(tex.trabecular, src, pts, grid_px_mm)
        dt = np.float32(TRABECULAR_AMPLITUDE) * val * np.maximum(trab, 0.0)
        np.clip(dt, None, 0.5 * np.maximum(soft, 0.0), out=dt)
        trab += dt
        soft -= dt
