"""Scatter (the view's SPR map × a per-technique scale, spread by a broad Gaussian) and the
dose of a frame.  The SPR model and the grid are in :mod:`.grid`."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from ._geometry import ViewMaps
from ._params import TechniqueParams, ViewGeometry
from .detector import DetectorModel
from .xray import air_kerma_ugy_per_mas

F32 = npt.NDArray[np.float32]


def scatter_blocks(gr: int, gc: int) -> tuple[int, int]:
    """Block size (rows, cols) of the scatter grid when it divides the ray grid evenly
    (the scatter grid is ``max(n // 8, 4)`` per axis), else (0, 0)."""
    sh, sw = max(gr // 8, 4), max(gc // 8, 4)
    if gr % sh or gc % sw:
        return 0, 0
    return gr // sh, gc // sw


def scatter(vm: ViewMaps, primary: F32, scale: float = 1.0) -> F32:
    """Scatter reaching the panel: ``primary × SPR`` (× ``scale``), spread; none outside the
    collimated field."""
    small = scatter_small(vm, primary * vm.spr)
    if scale != 1.0:
        small *= np.float32(scale)
    big = cv2.resize(small, (vm.grid_cols, vm.grid_rows), interpolation=cv2.INTER_LINEAR)
    return (big * vm.field_grid).astype(np.float32)


def scatter_small(vm: ViewMaps, src: F32) -> F32:
    """Scatter of the source ``primary × SPR``, on a grid 8× coarser (linear in ``src``)."""
    small = cv2.resize(
        src,
        (max(vm.grid_cols // 8, 4), max(vm.grid_rows // 8, 4)),
        interpolation=cv2.INTER_AREA,
    )
    return scatter_spread(vm, np.asarray(small, np.float32))


def scatter_spread(vm: ViewMaps, small: F32) -> F32:
    sigma_px = 40.0 / (vm.grid_px_mm * vm.grid_rows / small.shape[0])
    out: F32 = np.asarray(
        cv2.GaussianBlur(small, (0, 0), sigma_px, borderType=cv2.BORDER_CONSTANT), np.float32
    )
    return out


def dose(
    det: DetectorModel,
    g: ViewGeometry,
    vm: ViewMaps,
    t: TechniqueParams,
    k1m_per_mas: float | None = None,
) -> dict[str, float]:
    if k1m_per_mas is None:
        k1m_per_mas = air_kerma_ugy_per_mas(t.kvp, t.filtration_mm_al, t.filtration_mm_cu)
    k1m = k1m_per_mas * t.mas  # µGy at 1 m
    fr = vm.frame
    ent = k1m * (1000.0 / fr.source_to_entrance_mm) ** 2 / 1000.0
    ref = k1m * (1000.0 / (fr.source_to_iso_mm - 150.0)) ** 2 / 1000.0
    w = min(g.field_width_mm, det.cols * det.pixel_mm) / 10.0
    h = min(g.field_height_mm, det.rows * det.pixel_mm) / 10.0
    k_det = k1m * (1000.0 / fr.sid_mm) ** 2  # µGy at the detector plane, free in air
    dap = k_det * 1e-6 * w * h
    return {
        "entrance_air_kerma_mgy": ent,
        "reference_air_kerma_mgy": ref,
        "dap_gy_cm2": dap,
    }
