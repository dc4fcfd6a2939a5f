"""Indirect flat-panel detector: CsI:Tl scintillator on an a-Si photodiode array.

Energy-integrating model (research note §5.4):

* an incident photon of energy E is absorbed in the CsI with probability
  η(E) = 1 − exp(−µ_CsI(E)·t·packing) (xraydb attenuation [S124]) and deposits E;
  escape of Cs/I K-fluorescence is neglected;
* the mean signal is Σ N(E)·η(E)·E; the quantum noise is Poisson in the absorbed quanta, so its
  variance is Σ N(E)·η(E)·E² (energy weighting of an integrating detector) [S139][S140];
  it is drawn as a Gaussian field with that variance (no per-photon loops);
* scintillator light spread is a Gaussian blur (σ ≈ 0.7 px) of signal and quantum noise;
* then per-pixel gain (fixed-pattern ±2 %), electronic noise, dark offset (with row banding),
  a few defect pixels, and clipping to the 16-bit range.

Raw output is uint16, uncorrected; more X-rays → higher value.  Offset/gain correction
(FFC = (raw − dark)/(flat − dark) × mean [S142]) is the reader's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from .xray import mu_per_mm

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class DetectorModel:
    rows: int = 1024
    cols: int = 1024
    pixel_mm: float = 0.417  # ≈ 43 cm panel
    bits: int = 16  # stored
    csi_thickness_mm: float = 0.6
    csi_packing_fraction: float = 0.8  # columnar CsI fill factor
    electrons_per_kev: float = 25.0  # absorbed keV → photodiode electrons
    electrons_per_count: float = 4000.0  # ADC gain: ≈ 1100 counts/µGy, saturates ≈ 60 µGy
    electronic_noise_e: float = 2000.0  # rms read noise, electrons
    offset_counts: float = 1000.0  # dark offset
    offset_sigma_counts: float = 12.0  # pixel-to-pixel dark non-uniformity
    gain_nonuniformity: float = 0.02  # fixed-pattern gain, ±2 %
    defect_pixels: int = 24  # dead (stuck at offset) or hot (saturated) pixels
    blur_px: float = 0.7  # scintillator light spread, Gaussian σ in pixels
    seed: int = 0

    @property
    def max_value(self) -> int:
        return int(2**self.bits - 1)

    @property
    def counts_per_kev(self) -> float:
        return self.electrons_per_kev / self.electrons_per_count

    def absorption(self, energies_kev: npt.ArrayLike) -> FloatArray:
        """Fraction of incident photons absorbed in the CsI at each energy."""
        mu = mu_per_mm("csi", energies_kev)
        return 1.0 - np.exp(-mu * self.csi_thickness_mm * self.csi_packing_fraction)

    def energy_weights(self, energies_kev: npt.ArrayLike) -> FloatArray:
        """Mean absorbed energy (keV) per incident photon at each energy: η(E)·E."""
        e = np.asarray(energies_kev, dtype=float)
        out: FloatArray = self.absorption(e) * e
        return out

    # -- fixed patterns ---------------------------------------------------------------------------
    def gain_map(self) -> F32:
        return _maps(self)[0]

    def offset_map(self) -> F32:
        return _maps(self)[1]

    def defects(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """(rows, cols, hot) of the defect pixels."""
        m = _maps(self)
        return m[2], m[3], m[4]

    # -- read-out ---------------------------------------------------------------------------------
    def read_out(
        self,
        signal_kev: F32 | FloatArray,
        variance_kev2: F32 | FloatArray | None,
        rng: np.random.Generator,
    ) -> U16:
        """Turn the mean absorbed energy per pixel (keV) and its quantum variance (keV²) into a
        raw uint16 frame."""
        sig = np.asarray(signal_kev, dtype=np.float32)
        if sig.shape != (self.rows, self.cols):
            raise ValueError(f"signal shape {sig.shape} != detector {(self.rows, self.cols)}")
        if variance_kev2 is not None:
            std = np.sqrt(np.maximum(np.asarray(variance_kev2, dtype=np.float32), 0.0))
            noisy: F32 = np.asarray(
                sig + std * rng.standard_normal(sig.shape, dtype=np.float32), np.float32
            )
        else:
            noisy = sig.copy()
        if self.blur_px > 0:
            noisy = np.asarray(
                cv2.GaussianBlur(noisy, (0, 0), self.blur_px, borderType=cv2.BORDER_REFLECT),
                dtype=np.float32,
            )
        counts = noisy * np.float32(self.counts_per_kev) * self.gain_map()
        counts += self.offset_map()
        read_sigma = np.float32(self.electronic_noise_e / self.electrons_per_count)
        counts += read_sigma * rng.standard_normal(sig.shape, dtype=np.float32)
        r, c, hot = self.defects()
        counts[r, c] = np.where(hot, np.float32(self.max_value), self.offset_map()[r, c])
        np.clip(counts, 0.0, float(self.max_value), out=counts)
        out: U16 = np.rint(counts).astype(np.uint16)
        return out

    def dark(self, rng: np.random.Generator) -> U16:
        return self.read_out(np.zeros((self.rows, self.cols), np.float32), None, rng)


@lru_cache(maxsize=8)
def _maps(
    det: DetectorModel,
) -> tuple[F32, F32, npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    rng = np.random.default_rng([det.seed, 0xD37])
    shape = (det.rows, det.cols)
    g = det.gain_nonuniformity
    # smooth (scintillator thickness, photodiode) + pixel-level fixed-pattern gain
    coarse = rng.standard_normal((8, 8)).astype(np.float32)
    smooth = cv2.resize(coarse, (det.cols, det.rows), interpolation=cv2.INTER_CUBIC)
    pixel = rng.standard_normal(shape).astype(np.float32)
    gain = 1.0 + np.float32(g * 0.6) * smooth / max(float(np.std(smooth)), 1e-6)
    gain += np.float32(g * 0.4) * pixel
    gain = np.clip(gain, 1.0 - 3 * g, 1.0 + 3 * g).astype(np.float32)
    # offset: per-pixel scatter plus row banding (row-wise read-out)
    offset = np.full(shape, det.offset_counts, np.float32)
    offset += np.float32(det.offset_sigma_counts) * rng.standard_normal(shape).astype(np.float32)
    offset += np.float32(det.offset_sigma_counts * 0.5) * rng.standard_normal((det.rows, 1)).astype(
        np.float32
    )
    n = det.defect_pixels
    rr = rng.integers(0, det.rows, n)
    cc = rng.integers(0, det.cols, n)
    hot = rng.random(n) < 0.3
    for a in (gain, offset):
        a.setflags(write=False)
    return gain, offset, rr, cc, hot
