"""Compartment iodine on the ray grid: areal density Σ_c C_c·L_c, the volume-dependent maps
(bladder, pelvicalyceal systems) and the ureters' peristaltic boluses (see :mod:`.imaging`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ._geometry import ViewMaps, bbox, chords
from ._lru import trim
from .phantom import Phantom

F32 = npt.NDArray[np.float32]

URETER_BOLUS_SPEED_MM_S = 25.0
URETER_BOLUS_HALF_LENGTH_MM = 22.0
URETER_BASELINE_FILL = 0.08
PERISTALSIS_PER_MIN = 3.0  # 1–5/min [S48][S50]
# compartments drawn per volume (and the volume assumed when none is given)
VOLUME_COMPARTMENTS = {"bladder": 150.0, "pelvis_left": 7.0, "pelvis_right": 7.0}
VOLUME_CACHE_SIZE = 96  # volume-dependent maps kept per view


def volume_map(
    phantom: Phantom, vm: ViewMaps, comp: str, volume_ml: float
) -> tuple[tuple[slice, slice], F32] | None:
    """Iodine path-length map of a volume-dependent compartment (bladder, pelvis_*)."""
    q = round(math.log(max(volume_ml, 0.1)) / math.log(1.05))
    key = (comp, q)
    if key in vm.volume_cache:
        vm.volume_cache.move_to_end(key)
        return vm.volume_cache[key]
    vol = 1.05**q
    if comp == "bladder":
        prims = phantom.bladder_primitives(vol)
    else:
        prims = phantom.collecting_system(comp.removeprefix("pelvis_"), vol)
    grid = (vm.u, vm.v, vm.grid_px_mm)
    boxes = [(p, bbox(p, vm.frame, grid)) for p in prims]
    live = [(p, b) for p, b in boxes if b is not None]
    entry: tuple[tuple[slice, slice], F32] | None = None
    if live:
        r0 = min(b[0].start for _, b in live)
        r1 = max(b[0].stop for _, b in live)
        c0 = min(b[1].start for _, b in live)
        c1 = max(b[1].stop for _, b in live)
        acc = np.zeros((r1 - r0, c1 - c0), np.float32)
        for p, (rs, cs) in live:
            ch = chords(p, vm.frame, vm.u, vm.v, vm.ray_len, rs, cs)
            acc[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] += (
                np.float32(p.iodine_scale) * ch
            )
        np.maximum(acc, 0.0, out=acc)
        entry = ((slice(r0, r1), slice(c0, c1)), acc)
    vm.volume_cache[key] = entry
    trim(vm.volume_cache, VOLUME_CACHE_SIZE)
    return entry


def iodine_areal_mg_cm2(
    phantom: Phantom,
    vm: ViewMaps,
    conc: Mapping[str, float],
    volumes: Mapping[str, float] | None,
    time_s: float,
) -> F32:
    """Σ_c C_c·L_c in mg/cm² on the grid (C mg/mL = mg/cm³; L mm → cm)."""
    areal = np.zeros((vm.grid_rows, vm.grid_cols), np.float32)
    vols = volumes or {}
    for comp, lmap in vm.iodine.items():
        c = float(conc.get(comp, 0.0))
        if c <= 0.0:
            continue
        if comp.startswith("ureter_"):
            areal += ureter_areal(phantom, vm, comp, c, vols, time_s)
            continue
        areal += np.float32(0.1 * c) * lmap
    for comp, default_ml in VOLUME_COMPARTMENTS.items():
        c = float(conc.get(comp, 0.0))
        if c <= 0.0:
            continue
        entry = volume_map(phantom, vm, comp, float(vols.get(comp, default_ml)))
        if entry is not None:
            (rs, cs), ch = entry
            areal[rs, cs] += np.float32(0.1 * c) * ch
    return areal


def ureter_areal(
    phantom: Phantom, vm: ViewMaps, comp: str, c: float, vols: Mapping[str, float], time_s: float
) -> F32:
    lmap = vm.iodine[comp]
    arc = vm.ureter_arc.get(comp)
    if arc is None:
        return np.float32(0.1 * c) * lmap
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(lmap > 1e-3, arc / np.maximum(lmap, 1e-6), 0.0).astype(np.float32)
    period = 60.0 / PERISTALSIS_PER_MIN
    phase = 0.0 if comp.endswith("left") else 0.37 * period
    tau = (time_s - phase - s / URETER_BOLUS_SPEED_MM_S) % period
    tau = np.minimum(tau, period - tau)
    sigma_t = URETER_BOLUS_HALF_LENGTH_MM / URETER_BOLUS_SPEED_MM_S
    g = np.exp(-0.5 * (tau / sigma_t) ** 2) + URETER_BASELINE_FILL + 0.5 * np.exp(-s / 25.0)
    amp = ureter_amp(phantom, comp, vols)
    out: F32 = (np.float32(0.1 * c * amp) * lmap * g).astype(np.float32)
    return out


def ureter_amp(phantom: Phantom, comp: str, vols: Mapping[str, float]) -> float:
    """Fill scale of a ureter: its volume over that of the mean peristaltic fill profile."""
    if comp not in vols:
        return 1.0
    period = 60.0 / PERISTALSIS_PER_MIN
    sigma_t = URETER_BOLUS_HALF_LENGTH_MM / URETER_BOLUS_SPEED_MM_S
    g_mean = sigma_t * math.sqrt(2.0 * math.pi) / period + URETER_BASELINE_FILL + 0.05
    return float(np.clip(vols[comp] / (phantom.ureter_tube_ml * g_mean), 0.0, 2.0))
