"""Automatic exposure control of the simulated generator, and the exposure index.

An AEC ends a radiographic exposure when the ionisation chambers between the grid and the
panel have collected a set air kerma; the mAs therefore follows the patient's size and the kV.
Modelled here (IEC 60601-2-54 §203.6.4 for the back-up timer; chamber layout as the common
three-field bucky AEC):

* three chamber fields (left and right upper, centre lower; 6 × 5 cm at the panel), any of
  them selected; the chamber reads the air kerma at the panel, primary and scatter, behind the
  grid (:meth:`ImagingChain.detector_kerma_per_mas`, iodine included);
* the chamber's target is calibrated per kV, as at acceptance, on a 20 cm water phantom so
  that the *detector* reaches the target exposure index there (the chambers are air-kerma
  devices, the CsI panel is not: away from 20 cm the beam hardens or softens and the panel's
  signal per µGy moves; that residual is what the validation test bounds, ±10 % from 18 to
  30 cm);
* exposure time = mAs / mA, ended early by the back-up timer (``backup_ms``) or the
  generator's mAs limit; an AEC that reaches neither its target nor the back-up
  reports ``terminated_by == "backup"``.

Exposure index (IEC 62494-1:2008): EI = 100 · K_CAL, K_CAL the air kerma (µGy) of an RQA5 beam
(70 kV, 21 mm Al added; IEC 61267) that gives the same mean detector signal in the value of
interest; deviation index DI = 10·log₁₀(EI / EI_T) (AAPM TG-116, Shepard et al., Med. Phys.
36 (2009) 2898).  EI_T = 250 (≈ 2.5 µGy at a CsI panel, an abdomen target in TG-116's range).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.carm import AecMode, ExposureIndex, Frame, Technique

from .physics import DetectorModel, ImagingChain, TechniqueParams, ViewGeometry
from .physics.grid import Grid
from .physics.xray import binned_spectrum, kerma_ugy_per_photon_mm2, mu_per_mm

F32 = npt.NDArray[np.float32]

RQA5_KVP = 70.0
RQA5_ADDED_AL_MM = 21.0  # IEC 61267 RQA5: 70 kV, 21 mm Al added (HVL ≈ 7.1 mm Al)
TARGET_EI = 250.0
CALIBRATION_WATER_MM = 200.0


@dataclass(frozen=True)
class Chamber:
    """An ionisation-chamber field, centre and size at the panel (mm; v runs caudad)."""

    name: str
    u_mm: float
    v_mm: float
    width_mm: float = 60.0
    height_mm: float = 50.0


CHAMBERS = (
    Chamber("left", 90.0, -60.0),  # the patient's left (image right), upper
    Chamber("centre", 0.0, 40.0),
    Chamber("right", -90.0, -60.0),
)


@dataclass(frozen=True)
class AecSettings:
    """The AEC's selection and limits: ``fields`` (chamber names), ``target_ei``,
    ``backup_ms`` (the back-up timer) and ``max_mas`` (the generator's limit)."""

    fields: tuple[str, ...] = ("centre",)
    target_ei: float = TARGET_EI
    backup_ms: float = 1000.0
    max_mas: float = 400.0

    def __post_init__(self) -> None:
        names = {c.name for c in CHAMBERS}
        bad = [f for f in self.fields if f not in names]
        if bad or not self.fields:
            raise ValueError(f"AEC fields {self.fields}: each one of {sorted(names)}")


@dataclass(frozen=True)
class AecResult:
    mas: float
    exposure_ms: float
    chamber_ugy: float  # what the chambers collected
    terminated_by: str  # "chamber" | "backup"


def detector_kev_per_ugy(
    det: DetectorModel, kvp: float, al_mm: float, water_mm: float, grid: Grid | None = None
) -> float:
    """Panel absorbed energy (keV per mm²) per µGy of air kerma at the panel, for a beam behind
    ``water_mm`` of water and ``grid``."""
    return _kev_per_ugy(det, round(kvp, 1), round(al_mm, 2), round(water_mm, 1), grid)


@lru_cache(maxsize=128)
def _kev_per_ugy(
    det: DetectorModel, kvp: float, al_mm: float, water_mm: float, grid: Grid | None
) -> float:
    e, n = binned_spectrum(kvp, al_mm)
    n = n * np.exp(-mu_per_mm("water", e) * water_mm)
    if grid is not None:
        n = n * grid.primary_transmission(e)
    return float(np.sum(n * det.energy_weights(e)) / np.sum(n * kerma_ugy_per_photon_mm2(e)))


def exposure_index(det: DetectorModel, mean_signal_kev_per_pixel: float) -> float:
    """IEC 62494-1 EI of a mean panel signal (keV absorbed per pixel) in the value of
    interest: 100 × the RQA5 air kerma (µGy) that gives that signal."""
    per_mm2 = mean_signal_kev_per_pixel / det.pixel_mm**2
    return 100.0 * per_mm2 / detector_kev_per_ugy(det, RQA5_KVP, 2.5 + RQA5_ADDED_AL_MM, 0.0)


def deviation_index(ei: float, target_ei: float = TARGET_EI) -> float:
    """DI = 10·log₁₀(EI/EI_T) (IEC 62494-1)."""
    if ei <= 0 or target_ei <= 0:
        return -math.inf
    return 10.0 * math.log10(ei / target_ei)


def chamber_target_ugy(
    det: DetectorModel, t: TechniqueParams, target_ei: float, grid: Grid | None = None
) -> float:
    """The chamber air kerma that gives ``target_ei`` at this kV behind 20 cm water and the
    grid (the per-kV calibration of the AEC)."""
    rqa5 = detector_kev_per_ugy(det, RQA5_KVP, 2.5 + RQA5_ADDED_AL_MM, 0.0)
    here = detector_kev_per_ugy(det, t.kvp, t.filtration_mm_al, CALIBRATION_WATER_MM, grid)
    return target_ei / 100.0 * rqa5 / here


def chamber_mask(u: F32, v: F32, fields: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    mask = np.zeros((len(v), len(u)), bool)
    for c in CHAMBERS:
        if c.name in fields:
            mask |= (np.abs(u - c.u_mm)[None, :] <= c.width_mm / 2) & (
                np.abs(v - c.v_mm)[:, None] <= c.height_mm / 2
            )
    return mask


def aec_exposure(
    chain: ImagingChain,
    geometry: ViewGeometry,
    technique: TechniqueParams,
    ma: float,
    iodine_mg_ml: Mapping[str, float],
    volumes_ml: Mapping[str, float] | None,
    time_s: float,
    settings: AecSettings,
) -> AecResult:
    """The mAs at which the selected chambers reach their kV-calibrated target (the mAs of
    ``technique`` is ignored), capped by the back-up timer and the generator's mAs limit."""
    kerma, u, v = chain.detector_kerma_per_mas(
        geometry, technique, iodine_mg_ml, volumes_ml, time_s
    )
    mask = chamber_mask(u, v, settings.fields)
    per_mas = float(kerma[mask].mean()) if mask.any() else 0.0
    target = chamber_target_ugy(chain.detector, technique, settings.target_ei, chain.grid)
    cap = min(settings.max_mas, ma * settings.backup_ms / 1000.0)
    mas = target / per_mas if per_mas > 0 else math.inf
    by = "chamber"
    if mas > cap:
        mas, by = cap, "backup"
    return AecResult(mas, mas / ma * 1000.0, per_mas * mas, by)


def frame_exposure_index(
    det: DetectorModel, pixels: npt.NDArray[np.uint16], pedestal: float, target_ei: float
) -> ExposureIndex:
    """EI of an offset-corrected frame (``pixels`` − ``pedestal`` = signal counts) over the
    value of interest, the centre chamber's field (where the AEC measures by default)."""
    u = (np.arange(det.cols) + 0.5 - det.cols / 2.0) * det.pixel_mm
    v = (np.arange(det.rows) + 0.5 - det.rows / 2.0) * det.pixel_mm
    mask = chamber_mask(u.astype(np.float32), v.astype(np.float32), ("centre",))
    counts = float(pixels[mask].mean()) - pedestal if mask.any() else 0.0
    return ExposureIndex(exposure_index(det, max(counts, 0.0) / det.counts_per_kev), target_ei)


class AecUnit:
    """The simulated generator's AEC: ends radiographic exposures on the chambers, and fails
    on demand (``fail_next``: the chambers stop answering, the back-up timer ends the
    exposure; the frame is kept, the fault reported)."""

    def __init__(self) -> None:
        self.faults_pending = 0

    def fail_next(self, count: int = 1) -> None:
        self.faults_pending += count

    def take_fault(self) -> bool:
        """Whether this exposure's AEC fails (one pending fault used up)."""
        if self.faults_pending:
            self.faults_pending -= 1
            return True
        return False

    def end_exposure(
        self,
        chain: ImagingChain,
        scene: tuple[ViewGeometry, TechniqueParams, dict[str, float], dict[str, float], float],
        technique: Technique,
        max_mas: float,
        *,
        failed: bool = False,
    ) -> tuple[Technique, tuple[str, dict[str, object]]]:
        """(the technique as exposed, (event kind, event data)) for an AEC ``technique``:
        ``aec_terminated`` (the chambers ended it), ``aec_backup`` (the back-up timer did:
        too little radiation reached the chambers) or ``aec_fault`` (the AEC failed:
        ``failed``, from :meth:`take_fault`). Pure arithmetic: it may run off the loop."""
        mode = technique.aec
        assert mode is not None
        geometry, params, conc, volumes, t = scene
        settings = AecSettings(mode.fields, mode.target_ei, mode.backup_ms, max_mas)
        if failed:
            cap = min(max_mas, technique.ma * mode.backup_ms / 1000.0)
            result = AecResult(cap, cap / technique.ma * 1000.0, 0.0, "backup")
            kind = "aec_fault"
        else:
            result = aec_exposure(chain, geometry, params, technique.ma, conc, volumes, t, settings)
            kind = "aec_terminated" if result.terminated_by == "chamber" else "aec_backup"
        exposed = dataclasses.replace(technique, exposure_ms=max(result.exposure_ms, 0.5))
        data: dict[str, object] = {
            "operation": "expose",
            "mas": exposed.mas,
            "exposure_ms": exposed.exposure_ms,
            "fields": ",".join(mode.fields),
            "terminated_by": result.terminated_by,
        }
        return exposed, (kind, data)


def with_exposure_index(
    frame: Frame, det: DetectorModel, pedestal: float, corrected: Any = None
) -> Frame:
    """``frame`` with its EI (target: the AEC's, else :data:`TARGET_EI`). ``corrected``: the
    frame offset- and gain-corrected, when ``frame`` is raw — a panel states its EI from its
    own calibrated signal whatever it delivers."""
    aec: AecMode | None = frame.technique.aec
    target = aec.target_ei if aec is not None else TARGET_EI
    pixels = frame.pixels if corrected is None else corrected
    ei = frame_exposure_index(det, pixels, pedestal, target)
    return dataclasses.replace(frame, exposure_index=ei)
