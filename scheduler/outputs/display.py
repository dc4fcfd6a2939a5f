"""Raw detector values → displayable grey levels (bone and iodine white).

The mapping is the classic radiographic one: take the logarithm of the detector signal (so grey
level is proportional to the attenuation line integral), invert it (more attenuation → brighter),
window it on the exposed part of the field and add a mild unsharp mask. The collimated-out border
receives almost no radiation, sits near the detector's dark offset and would otherwise pull the
window far down; the window is therefore computed only inside the exposed rectangle, found either
from an explicit mask or from the row/column signal profiles.

The same mapping feeds the contact sheet (8-bit) and DICOM storage (``bits``-bit, default 12).
A :class:`DisplayWindow` computed once can be applied to every frame of a fluoroscopy run so the
frames of one run share one grey scale (no flicker).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .percentiles import percentiles

__all__ = [
    "DisplayWindow",
    "collimated_box",
    "collimated_mask",
    "compute_window",
    "exposed_region",
    "to_display",
    "to_presentation",
]

#: Row/column profile threshold, as a fraction of the profile's range above its minimum.
_BORDER_FRACTION = 0.10
#: Percentiles of the exposed region that bound the window (robust against hot/dead pixels).
_LOW_PCT, _HIGH_PCT = 0.5, 99.5
#: Window widened by this fraction of its span on each side, so extremes are not clipped hard.
_MARGIN = 0.04
#: Without a collimator shadow, the offset subtracted before the log is this fraction of the
#: frame's 0.1st percentile (the true dark offset is unknown then; stay well below it).
_OFFSET_FRACTION = 0.5
#: With a collimator shadow, the offset is this fraction of the shadow's 1st percentile.
_BORDER_OFFSET_FRACTION = 0.97
_MIN_BORDER_SAMPLES = 256
#: Unsharp mask strength and blur scale (fraction of the shorter image side).
_UNSHARP_AMOUNT = 0.5
_UNSHARP_SCALE = 1.0 / 96.0
#: Statistics are taken on a subsample of about this many pixels (fast, deterministic).
_STAT_SAMPLES = 65536


@dataclass(frozen=True, slots=True)
class DisplayWindow:
    """A grey-scale mapping: ``v = (log_high - log(max(raw - offset, 1))) / (log_high - log_low)``.

    ``log_low`` (most attenuation) maps to white, ``log_high`` (least attenuation) to black.
    """

    offset: float
    log_low: float
    log_high: float


def _as_raw(raw: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    if raw.ndim != 2 or raw.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {raw.shape}")
    return raw


def _step(shape: tuple[int, ...]) -> int:
    return max(1, math.isqrt(max(1, shape[0] * shape[1] // _STAT_SAMPLES)))


def _hull(profile: npt.NDArray[np.float64]) -> slice:
    """The contiguous span of a profile that lies clearly above its minimum."""
    lo = float(profile.min())
    hi = float(profile.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return slice(0, profile.size)
    above = np.flatnonzero(profile > lo + _BORDER_FRACTION * (hi - lo))
    return slice(int(above[0]), int(above[-1]) + 1)


def exposed_region(raw: npt.NDArray[np.generic]) -> tuple[slice, slice]:
    """Rows and columns of the exposed (collimated-in) rectangle, from the signal profiles.

    Rows whose mean sits near the lowest row mean (the collimator shadow) are excluded from the
    top and bottom; columns likewise, measured inside the exposed rows only. An image without a
    collimated border yields (nearly) the whole frame.
    """
    _as_raw(raw)
    s = _step(raw.shape)
    sub = raw[::s, ::s].astype(np.float32)
    rows = _hull(sub.mean(axis=1, dtype=np.float64))
    cols = _hull(sub[rows].mean(axis=0, dtype=np.float64))
    return (
        slice(rows.start * s, min(raw.shape[0], (rows.stop - 1) * s + 1)),
        slice(cols.start * s, min(raw.shape[1], (cols.stop - 1) * s + 1)),
    )


def collimated_box(
    shape: tuple[int, int],
    pixel_spacing_mm: float,
    width_mm: float,
    height_mm: float,
    *,
    inset: float = 0.03,
) -> tuple[slice, slice]:
    """Rows and columns of a centred collimated field (given at the detector plane).

    ``inset`` shrinks the field on every side by that fraction of its size, keeping the penumbra
    out of the window statistics. The field is clipped to the detector; a field that leaves
    nothing of it is taken to be the whole detector.
    """
    rows, cols = shape
    h_px = height_mm / pixel_spacing_mm * (1.0 - 2.0 * inset)
    w_px = width_mm / pixel_spacing_mm * (1.0 - 2.0 * inset)
    r0 = max(0, round((rows - h_px) / 2.0))
    r1 = min(rows, round((rows + h_px) / 2.0))
    c0 = max(0, round((cols - w_px) / 2.0))
    c1 = min(cols, round((cols + w_px) / 2.0))
    if r1 > r0 and c1 > c0:
        return slice(r0, r1), slice(c0, c1)
    return slice(0, rows), slice(0, cols)


def collimated_mask(
    shape: tuple[int, int],
    pixel_spacing_mm: float,
    width_mm: float,
    height_mm: float,
    *,
    inset: float = 0.03,
) -> npt.NDArray[np.bool_]:
    """Boolean mask of :func:`collimated_box`'s field."""
    mask = np.zeros(shape, dtype=np.bool_)
    mask[collimated_box(shape, pixel_spacing_mm, width_mm, height_mm, inset=inset)] = True
    return mask


def compute_window(
    raw: npt.NDArray[np.generic], *, exposed_mask: npt.NDArray[np.bool_] | None = None
) -> DisplayWindow:
    """Window for ``raw``: robust percentiles of the log signal inside the exposed region.

    The exposed region is the rectangle :func:`exposed_region` detects, intersected with
    ``exposed_mask`` when one is given (the mask alone if they do not overlap).
    """
    _as_raw(raw)
    s = _step(raw.shape)
    sub = raw[::s, ::s]
    rows, cols = exposed_region(raw)
    detected = np.zeros(sub.shape, dtype=np.bool_)
    r0, r1 = -(-rows.start // s), -(-rows.stop // s)  # subsample indices (ceil division)
    c0, c1 = -(-cols.start // s), -(-cols.stop // s)
    detected[r0:r1, c0:c1] = True
    border = sub[~detected]
    if border.size >= _MIN_BORDER_SAMPLES:
        # The collimator shadow shows the dark offset (plus a little scatter): subtract most
        # of it, so the log follows the attenuation even behind the densest structures.
        offset = _BORDER_OFFSET_FRACTION * max(0.0, float(percentiles(border, (1.0,))[0]))
    else:
        offset = _OFFSET_FRACTION * max(0.0, float(percentiles(sub, (0.1,))[0]))
    selected = detected
    if exposed_mask is not None:
        if exposed_mask.shape != raw.shape:
            raise ValueError(f"mask shape {exposed_mask.shape} != image shape {raw.shape}")
        # The expected field and the detected one together: a field larger than what was
        # really exposed (clipped, mis-stated) must not let the collimator shadow back in.
        both = detected & exposed_mask[::s, ::s]
        selected = both if both.any() else exposed_mask[::s, ::s]
    values = sub[selected] if selected.any() else sub.ravel()
    lo_raw, hi_raw = percentiles(values, (_LOW_PCT, _HIGH_PCT))
    log_low = math.log(max(float(lo_raw) - offset, 1.0))
    log_high = math.log(max(float(hi_raw) - offset, 1.0))
    span = log_high - log_low
    if span < 1e-3:  # flat image: centre it in a nominal span
        span = 1.0
        log_low, log_high = log_low - 0.5, log_high + 0.5
    return DisplayWindow(offset, log_low - _MARGIN * span, log_high + _MARGIN * span)


class _Scratch(threading.local):
    """Full-frame float buffers reused from image to image, one set per thread.

    Fresh 4 MiB arrays at every image cost more than the arithmetic on them: each is new
    memory the kernel must map and zero page by page (on the write's critical path, the
    display mapping took twice as long as on warm buffers).
    """

    def __init__(self) -> None:
        self.arrays: dict[str, npt.NDArray[np.float32]] = {}

    def get(self, name: str, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
        array = self.arrays.get(name)
        if array is None or array.shape != shape:
            array = self.arrays[name] = np.empty(shape, dtype=np.float32)
        return array


_SCRATCH = _Scratch()
#: pixel types OpenCV converts to float while it subtracts
_CV_INPUTS = frozenset({np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)})


def _log_and_blur(
    raw: npt.NDArray[np.generic],
    exposed_mask: npt.NDArray[np.bool_] | None,
    window: DisplayWindow | None,
) -> tuple[DisplayWindow, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The window, the log image ``L = log(max(raw - offset, 1))`` and its blur.

    Both images are this thread's scratch buffers: valid until its next call.
    """
    _as_raw(raw)
    w = window if window is not None else compute_window(raw, exposed_mask=exposed_mask)
    rows, cols = raw.shape
    log = _SCRATCH.get("log", (rows, cols))
    # OpenCV for the element-wise steps: numpy's with a scalar operand took 3-8× as long.
    # (OpenCV takes a Python number as a scalar operand; its stubs only list arrays.)
    if raw.dtype in _CV_INPUTS:  # converted and offset in one pass
        cv2.subtract(raw, float(w.offset), dst=log, dtype=cv2.CV_32F)  # type: ignore[call-overload]
    else:
        np.copyto(log, raw, casting="unsafe")
        cv2.subtract(log, float(w.offset), dst=log)  # type: ignore[call-overload]
    cv2.max(log, 1.0, dst=log)  # type: ignore[call-overload]
    cv2.log(log, dst=log)
    # Unsharp mask: blur on a 4× smaller image (cheap at any blur radius), upsample back.
    # Two halvings by area average: the same 4 × 4 means as one quartering, a third of the
    # time (OpenCV's 2 × 2 path is vectorised).
    sigma = max(1.0, min(rows, cols) * _UNSHARP_SCALE)
    f = 4 if min(rows, cols) >= 64 else 1
    small: npt.NDArray[Any] = log
    for k in (2, 4) if f == 4 else ():
        small = cv2.resize(
            small, (max(1, cols // k), max(1, rows // k)), interpolation=cv2.INTER_AREA
        )
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    blur = _SCRATCH.get("blur", (rows, cols))
    cv2.resize(small, (cols, rows), dst=blur, interpolation=cv2.INTER_LINEAR)
    return w, log, blur


def _mapped(
    raw: npt.NDArray[np.generic],
    exposed_mask: npt.NDArray[np.bool_] | None,
    window: DisplayWindow | None,
    top: float,
    out: npt.NDArray[Any],
    depth: int,
) -> None:
    """``top × v`` into ``out`` (OpenCV ``depth``: rounded, saturated), where
    ``v = (log_high - L) / (log_high - log_low)`` with an unsharp mask, 1 = white."""
    w, log, blur = _log_and_blur(raw, exposed_mask, window)
    # The window is linear and so is the blur: v + a·(v - blur(v)) is one weighted sum of L
    # and blur(L), with no pass over the frame for the window alone.
    scale = -top / (w.log_high - w.log_low)
    a = _UNSHARP_AMOUNT
    cv2.addWeighted(
        log, scale * (1.0 + a), blur, -scale * a, -scale * w.log_high, dst=out, dtype=depth
    )


def to_presentation(
    raw: npt.NDArray[np.generic],
    bits: int = 12,
    *,
    exposed_mask: npt.NDArray[np.bool_] | None = None,
    window: DisplayWindow | None = None,
    out: npt.NDArray[np.uint16] | None = None,
) -> npt.NDArray[np.uint16]:
    """The display mapping into ``0 .. 2**bits - 1`` (uint16), for DICOM storage.

    ``out``: a C-contiguous uint16 array of ``raw``'s shape to write into (a frame of the
    image's pixel stack), instead of a new one.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be 1..16, got {bits}")
    if out is None:
        out = np.empty(raw.shape, dtype=np.uint16)
    elif out.shape != raw.shape or out.dtype != np.uint16 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint16 of shape {raw.shape}")
    top = (1 << bits) - 1
    _mapped(raw, exposed_mask, window, float(top), out, cv2.CV_16U)  # saturates below 0
    cv2.min(out, top, dst=out)  # type: ignore[call-overload]
    return out


def to_display(
    raw: npt.NDArray[np.generic],
    *,
    exposed_mask: npt.NDArray[np.bool_] | None = None,
    window: DisplayWindow | None = None,
) -> npt.NDArray[np.uint8]:
    """The display mapping into 8 bits: dense structures (bone, iodine) bright."""
    out = np.empty(raw.shape, dtype=np.uint8)
    _mapped(raw, exposed_mask, window, 255.0, out, cv2.CV_8U)  # saturates to 0..255
    return out
