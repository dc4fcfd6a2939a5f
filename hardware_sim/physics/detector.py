"""Indirect flat-panel detector: CsI:Tl scintillator on an a-Si photodiode array.

Energy-integrating model (research note §5.4):

* an incident photon of energy E is absorbed in the CsI with probability
  η(E) = 1 − exp(−µ_CsI(E)·t·packing) (xraydb attenuation [S124]) and deposits E;
  escape of Cs/I K-fluorescence is neglected;
* the mean signal is Σ N(E)·η(E)·E; the quantum noise is Poisson in the absorbed quanta, so its
  variance is Σ N(E)·η(E)·E² (energy weighting of an integrating detector) [S139][S140];
  it is drawn as a Gaussian field with that variance (no per-photon loops);
* scintillator light spread: the CsI:Tl line-spread function, a Gaussian of σ
  ``csi_lsf_sigma_mm`` (0.09 mm), with the pixel aperture (the rays sample points; a pixel
  integrates its area: the integral of the samples' linear interpolant over the pixel,
  kernel [1/8, 3/4, 1/8]) as one separable kernel (:meth:`DetectorModel.lsf_kernel`), applied
  to signal and quantum noise.  σ = 0.09 mm puts the presampling MTF50 of a 148–200 µm panel
  at ≈ 1.65 lp/mm, inside the 1.5–2 lp/mm measured for
  indirect CsI panels of 140–200 µm pitch (e.g. Samei & Flynn, Med. Phys. 30 (2003) 608;
  tests/physics/test_sharpness.py measures it with the edge method, IEC 62220-1);
  ``blur_px`` (a Gaussian σ in pixels, sampled, as before) overrides it;
* then per-pixel gain (fixed-pattern ±2 %), electronic noise, dark offset (with row banding),
  a few defect pixels, and clipping to the 16-bit range.

Raw output is uint16, uncorrected; more X-rays → higher value.  Offset/gain correction
(FFC = (raw − dark)/(flat − dark) × mean [S142]) is the reader's job.

Fast read-out for frame synthesis (:meth:`DetectorModel.read_out_synthesised`, used by the
imaging chain's fast path): the same model rearranged so that a frame costs three
whole-frame passes after the caller's upsampling (S += σ·q; × gain; + offset → uint16).

* The light spread is applied to the quantum noise before it is scaled: blur(σ·n) ≈ σ·blur(n)
  where the noise amplitude σ varies slowly (it follows the smooth mean signal), so the noise
  can come pre-blurred.  The mean signal is smoothed by the caller.
* Noise comes from a :class:`NoiseBank`: 1.5 frames of pre-blurred unit Gaussian noise, read
  as one frame-sized window at a pseudo-random flat offset per frame (≈ rows·cols/2
  different windows).  The bank is blurred *helically* (along the flattened sequence and with
  stride ``cols``), so every window has the right correlation everywhere, including where it
  wraps from one bank row to the next.  Caveat: frames reuse the same noise values at random
  shifts.  Between two frames the noise is uncorrelated pixel by pixel (unless their offsets
  fall within the 7×7 blur support of each other: probability ≈ 1e-4 per pair of frames) and
  frame averaging reduces it as it should; but the bank is finite, so this is not the tool for
  noise-power spectra over thousands of frames or anything that needs truly independent
  realisations: use ``ImagingChain(noise_bank=False)`` (fresh noise, white electronic noise;
  ~40 ms more per 1024² frame, numpy's generator dominating) or the exact path.
* With the bank, the electronic noise is drawn from the same pre-blurred field: its variance
  is added to the quantum variance (:meth:`DetectorModel.folded_read_variance_kev2`), so each
  pixel's noise variance is exact but the electronic part has the light spread's correlation
  (neighbour correlation ≈ 0.58) instead of being white.  At fluoroscopic signals it is 1–20 %
  of the variance; this saves a whole-frame pass.  Its amplitude ignores the ±2 % gain
  non-uniformity.
* counts-per-keV × fixed-pattern gain is one precomputed map; offset and defects as in
  :meth:`DetectorModel.read_out`; rounding and clipping to 16 bits happen in the final add
  (a saturating cast, round half to even like ``np.rint``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from .xray import mu_per_mm

#: CsI:Tl light spread (Gaussian σ of the LSF), see the module docstring.
CSI_LSF_SIGMA_MM = 0.09

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
    blur_px: float | None = None  # override: Gaussian σ in pixels (None: the CsI LSF)
    csi_lsf_sigma_mm: float = CSI_LSF_SIGMA_MM
    seed: int = 0

    def lsf_kernel(self) -> F32 | None:
        """The light spread as a 1-D kernel in pixels (applied along rows and columns): the
        CsI LSF integrated over the pixel aperture, or a sampled Gaussian of ``blur_px``;
        None for no spread."""
        return _lsf_kernel(self.blur_px, self.csi_lsf_sigma_mm, self.pixel_mm)

    @property
    def lsf_sigma_px(self) -> float:
        """Standard deviation of :meth:`lsf_kernel` in pixels (0 for none)."""
        k = self.lsf_kernel()
        if k is None:
            return 0.0
        x = np.arange(len(k)) - (len(k) - 1) / 2.0
        return float(np.sqrt(np.sum(k.astype(np.float64) * x * x)))

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
        noisy = apply_lsf(noisy, self.lsf_kernel())
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

    # -- fast read-out for frame synthesis ---------------------------------------------------
    def counts_gain(self) -> F32:
        """counts per keV × fixed-pattern gain (C-contiguous float32 rows×cols)."""
        out: F32 = np.ascontiguousarray(self.gain_map() * np.float32(self.counts_per_kev))
        return out

    def defect_values(self) -> U16:
        """Raw values of the defect pixels (hot: saturated; dead: stuck at their offset)."""
        return _defect_values(self)

    def blurred_noise_variance(self) -> float:
        """Variance of unit white noise after the light spread (Σ of the squared kernel)."""
        k = self.lsf_kernel()
        return 1.0 if k is None else float(np.sum(k.astype(np.float64) ** 2) ** 2)

    def folded_read_variance_kev2(self) -> float:
        """Electronic noise as a variance (keV², before gain) to add to the quantum variance
        when both are drawn from pre-blurred unit noise: σ_e² / Var(blurred unit noise)."""
        sigma_kev = self.electronic_noise_e / self.electrons_per_kev
        return sigma_kev**2 / self.blurred_noise_variance()

    def synthesis_noise(self, rng: np.random.Generator) -> tuple[F32, F32]:
        """Fresh (pre-blurred unit noise, white read noise in counts) for
        :meth:`read_out_synthesised`."""
        shape = (self.rows, self.cols)
        q = rng.standard_normal(shape, dtype=np.float32)
        q = apply_lsf(q, self.lsf_kernel())
        r = rng.standard_normal(shape, dtype=np.float32)
        r *= np.float32(self.electronic_noise_e / self.electrons_per_count)
        return q, r

    def read_out_synthesised(
        self,
        signal_kev: F32,
        std_kev: F32,
        counts_gain: F32,
        quantum: F32,
        read: F32 | None = None,
    ) -> U16:
        """Fast read-out (see the module docstring): raw = gain·(S + σ·q) [+ r] + offset.

        ``signal_kev`` (the mean absorbed energy, already light-spread) is overwritten;
        ``std_kev`` is the noise amplitude (keV) of the pre-blurred unit noise ``quantum``;
        ``counts_gain`` from :meth:`counts_gain`; ``read`` is white read noise in counts, or
        None when its variance is folded into ``std_kev`` (:meth:`folded_read_variance_kev2`).
        All float32 C-contiguous rows×cols arrays.
        """
        shape = (self.rows, self.cols)
        arrays = (signal_kev, std_kev, counts_gain, quantum) + (() if read is None else (read,))
        for a in arrays:
            if a.shape != shape or a.dtype != np.float32:
                raise ValueError(f"expected float32 {shape}, got {a.dtype} {a.shape}")
        cv2.accumulateProduct(std_kev, quantum, signal_kev)  # S += σ·q   (in place)
        np.multiply(signal_kev, counts_gain, out=signal_kev)
        if read is not None:
            np.add(signal_kev, read, out=signal_kev)
        # saturating float → uint16, round half to even (as np.rint + clip)
        out: U16 = np.asarray(
            cv2.add(signal_kev, self.offset_map(), dtype=cv2.CV_16U), dtype=np.uint16
        )
        r, c, _ = self.defects()
        out[r, c] = _defect_values(self)
        return out


class NoiseBank:
    """Pre-generated, pre-blurred unit Gaussian noise for frame synthesis (module docstring).

    ``draw(key)`` returns a read-only rows×cols view at an offset derived from ``key``
    (deterministic: same seed and key, same noise).
    """

    def __init__(self, detector: DetectorModel, seed: int = 0, length_frames: float = 1.5):
        self.detector = detector
        rows, cols = detector.rows, detector.cols
        self.frame_size = rows * cols
        bank_rows = rows + max(math.ceil(rows * (length_frames - 1.0)), 1)
        self.length = bank_rows * cols
        self._span = self.length - self.frame_size + 1
        self._seed = seed
        rng = np.random.default_rng([seed, detector.seed, 0xB4A7])
        white = rng.standard_normal(self.length, dtype=np.float32)
        self.quantum = _helical_blur(white, cols, detector.lsf_kernel())
        self.quantum.setflags(write=False)

    def draw(self, key: int) -> F32:
        a = _splitmix64((self._seed * 0x9E3779B1 + key) & _MASK64) % self._span
        shape = (self.detector.rows, self.detector.cols)
        return self.quantum[a : a + self.frame_size].reshape(shape)


def apply_lsf(img: F32, kernel: F32 | None) -> F32:
    """``img`` blurred by the separable light-spread ``kernel`` (edges reflected)."""
    if kernel is None:
        return img
    out: F32 = np.asarray(
        cv2.sepFilter2D(img, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT), np.float32
    )
    return out


@lru_cache(maxsize=32)
def _lsf_kernel(blur_px: float | None, sigma_mm: float, pixel_mm: float) -> F32 | None:
    if blur_px is not None:
        return light_spread_kernel(blur_px)
    if sigma_mm <= 0:
        return None
    s = sigma_mm / pixel_mm
    half = math.ceil(5.0 * s)
    n = np.arange(-half, half + 1, dtype=np.float64)
    lsf = np.exp(-0.5 * (n / s) ** 2) if half > 0 else np.ones(1)
    # the pixel aperture: the integral over a pixel of the linear interpolant of the ray
    # samples, (o₋₁ + 6·o₀ + o₊₁)/8 (the rays sample points; a pixel integrates an area)
    k = np.convolve(np.array([0.125, 0.75, 0.125]), lsf / lsf.sum())
    k /= k.sum()
    keep = np.nonzero(k >= 1e-6)[0]
    out: F32 = np.ascontiguousarray(k[keep[0] : keep[-1] + 1], dtype=np.float32)
    out.setflags(write=False)
    return out


def light_spread_kernel(sigma: float) -> F32 | None:
    """The 1-D Gaussian kernel cv2.GaussianBlur uses for ``sigma`` (float images), without
    the taps below 1e-6 (None for σ ≤ 0)."""
    if sigma <= 0:
        return None
    k = cv2.getGaussianKernel(round(sigma * 8 + 1) | 1, sigma, cv2.CV_32F).ravel()
    keep = np.nonzero(k >= 1e-6)[0]
    out: F32 = np.ascontiguousarray(k[keep[0] : keep[-1] + 1], dtype=np.float32)
    return out


@lru_cache(maxsize=8)
def _defect_values(det: DetectorModel) -> U16:
    r, c, hot = det.defects()
    off = np.clip(np.rint(det.offset_map()[r, c]), 0, det.max_value)
    out: U16 = np.where(hot, det.max_value, off).astype(np.uint16)
    out.setflags(write=False)
    return out


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _helical_blur(flat: F32, cols: int, k: F32 | None) -> F32:
    """Separable blur by the 1-D kernel ``k`` of ``flat`` read as rows of ``cols``, but with
    row r's last pixel followed by row r+1's first (a helix), so any frame-sized window at any
    flat offset has the right correlations everywhere."""
    if k is None:
        return flat.copy()
    k = k.reshape(-1, 1)
    h = cv2.filter2D(flat.reshape(1, -1), -1, k.T, borderType=cv2.BORDER_REFLECT)
    v = cv2.filter2D(h.reshape(-1, cols), -1, k, borderType=cv2.BORDER_REFLECT)
    out: F32 = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
    return out


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
