"""Films of a scenario for the signature tests: small panels, one compartment's opacification.

A compartment's opacification is measured as a subtraction, the way a radiologist reads a
film against its scout: the log of the film without that compartment's iodine minus the log
of the film with it (same view, same technique, same detector), median-filtered against
defect pixels.  Patient points are projected onto the panel through the view's own frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from drivers import Clock, VirtualTimeEventLoop
from hardware_sim.patient import SimPatient
from hardware_sim.physics import DetectorModel, ImagingChain, TechniqueParams, ViewGeometry
from hardware_sim.physics._geometry import resolve
from hardware_sim.physics.phantom import Primitive
from hardware_sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = ROOT / "configs" / "patients"
F64 = npt.NDArray[np.float64]
PANEL_PX = 160
PANEL_MM = 430.0
TECHNIQUE = TechniqueParams(kvp=72.0, mas=32.0)


def scenario(name: str, **update: object) -> Scenario:
    s = load_scenario(PATIENTS / f"{name}.yaml")
    return s.model_copy(update=update) if update else s


def patient(s: Scenario) -> SimPatient:
    loop = VirtualTimeEventLoop()
    try:
        return SimPatient(s, Clock(loop))
    finally:
        loop.close()


def bolus(p: SimPatient, until_s: float, ml: float = 50.0, flow: float = 4.0) -> None:
    """The standard bolus (300 mgI/mL) from t = 0, kinetics run to ``until_s``."""
    k = p.kinetics
    k.advance_to(min(ml / flow, until_s), 300.0 * flow)
    k.advance_to(until_s)


@dataclass
class Films:
    p: SimPatient
    geometry: ViewGeometry
    px: int = PANEL_PX
    technique: TechniqueParams = TECHNIQUE

    def __post_init__(self) -> None:
        pitch = PANEL_MM / self.px
        # ADC gain scaled with the pixel area, so that big pixels do not saturate
        gain = DetectorModel.electrons_per_count * (pitch / DetectorModel.pixel_mm) ** 2
        det = DetectorModel(
            rows=self.px, cols=self.px, pixel_mm=pitch, electrons_per_count=gain, seed=1
        )
        self.chain = ImagingChain(self.p.phantom, det, seed=1, fast=False)
        self.offset = det.offset_counts

    def _log(self, conc: Mapping[str, float]) -> F64:
        k = self.p.kinetics
        img = self.chain.render(self.geometry, self.technique, conc, k.volumes_ml(), k.time_s)
        raw = np.maximum(img.pixels.astype(np.float64) - self.offset, 1.0)
        return np.log(raw)

    def opacification(self, *compartments: str) -> F64:
        """Log subtraction: the film without ``compartments``' iodine minus the film now."""
        conc = dict(self.p.kinetics.concentrations_mg_ml())
        without = {c: (0.0 if c in compartments else v) for c, v in conc.items()}
        diff = self._log(without) - self._log(conc)
        out: F64 = cv2.medianBlur(diff.astype(np.float32), 3).astype(np.float64)
        return out

    def enhancement(self) -> F64:
        """The whole film against a film before contrast (every compartment at zero)."""
        conc = self.p.kinetics.concentrations_mg_ml()
        diff = self._log(dict.fromkeys(conc, 0.0)) - self._log(conc)
        out: F64 = cv2.medianBlur(diff.astype(np.float32), 3).astype(np.float64)
        return out

    def pixel(self, point: npt.ArrayLike) -> tuple[float, float]:
        """(row, col) where a patient-frame point projects (fractional)."""
        fr = resolve(self.p.phantom, self.geometry)
        q = np.asarray(point, dtype=float)
        n = fr.normal
        t = float(np.dot(fr.det_centre - fr.source, n) / np.dot(q - fr.source, n))
        hit = fr.source + t * (q - fr.source)
        pitch = PANEL_MM / self.px
        u = float(np.dot(hit - fr.det_centre, fr.ex)) / pitch
        v = float(np.dot(hit - fr.det_centre, fr.ey)) / pitch
        return v + self.px / 2.0 - 0.5, u + self.px / 2.0 - 0.5

    def shadow(self, prim: Primitive, samples: int = 3000) -> npt.NDArray[np.bool_]:
        """The panel pixels a solid's shadow covers (convex hull of its projected surface)."""
        rng = np.random.default_rng(0)
        d = rng.normal(size=(samples, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        if prim.kind == "cylinder":  # caps and mantle of the unit cylinder
            d[:, 2] = rng.uniform(-1.0, 1.0, samples)
            d[:, :2] /= np.linalg.norm(d[:, :2], axis=1, keepdims=True)
        rot = np.asarray(prim.rotation)
        pts = np.asarray(prim.centre) + (d * np.asarray(prim.semi_axes)) @ rot
        rc = np.array([self.pixel(p) for p in pts])
        hull = cv2.convexHull(np.round(rc[:, ::-1] * 16).astype(np.int32))
        mask = np.zeros((self.px, self.px), np.uint8)
        cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
        return mask.astype(bool)


def sample_line(img: F64, films: Films, a: F64, b: F64, n: int = 120) -> F64:
    """Values along the projection of the patient-frame segment a–b (bilinear)."""
    pts = [films.pixel(a + (b - a) * s) for s in np.linspace(0.0, 1.0, n)]
    rows = np.array([p[0] for p in pts], np.float32)
    cols = np.array([p[1] for p in pts], np.float32)
    out = cv2.remap(img.astype(np.float32), cols[None, :], rows[None, :], cv2.INTER_LINEAR)
    return out[0].astype(np.float64)


def runs_above(profile: F64, level: float, min_len: int) -> int:
    """Separate stretches of ``profile`` above ``level``, each at least ``min_len`` long."""
    above = np.concatenate([[False], profile > level, [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    starts, stops = edges[0::2], edges[1::2]
    return int(np.sum((stops - starts) >= min_len))
