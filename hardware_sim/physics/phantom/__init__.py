"""An analytic abdomen/pelvis phantom for urography.

The body is a list of :class:`Primitive` solids (ellipsoids and finite elliptic cylinders, each
with its own position and orientation).  Projection is linear in path length, so overlapping
solids are handled by *displacement*: a primitive adds its chord length to its ``material`` and
subtracts it from ``displaces`` (e.g. a kidney inside perirenal fat adds kidney and removes
adipose; a vertebral body's trabecular core removes cortical bone).  A primitive may also carry
iodine of a contrast compartment (:data:`ContrastKinetics.COMPARTMENTS`): its chord times
``iodine_scale`` is added to that compartment's iodine path-length map (a negative scale
removes enhancement, e.g. the renal sinus fat inside the enhancing kidney, or the papilla that
makes a calyx a cup).  Iodine-only primitives (``material=None``) are fluid spaces whose tissue
attenuation equals the surrounding soft tissue (urine in the calyces, ureters, bladder; blood in
the aorta and IVC).

Patient frame (mm): x = patient's left (+), y = anterior (+), z = cranial (+); z = 0 at the
iliac crest, the posterior body surface (on the table top when supine) at y = −ap/2.

Anatomy (sizes for a 175-cm, 75-kg build; heights scale with height, the fat with BMI):
body elliptic cylinder with subcutaneous and properitoneal fat; T11–L5 (cortical shell with
trabecular core, pedicles, laminae, spinous and transverse processes); ribs 10–12; sacrum,
iliac wings, pelvic inlet ring, pubic rami, ischia, femoral heads/necks/shafts; retroperitoneal
fat with psoas muscles; kidneys ≈ 11×5.4×3.6 cm, long axes tilted (upper poles medial), hila
turned anteriorly, left hilum at L1–L2 and the right kidney 2 cm lower [S52], with renal sinus
fat, 8 cupped minor calyces, infundibula and a renal pelvis; ureters along the psoas, over the
transverse-process tips, across the pelvic brim, into the bladder base; a bladder whose size
follows its volume (:meth:`Phantom.bladder_primitive`); aorta, iliac arteries and IVC; bowel
gas (colon frame, rectum, small-bowel bubbles) laid out by ``seed``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._build import Finding, PatientBuild
from ._findings import Findings
from ._shapes import IDENTITY, Mat3, Primitive, Vec3, cylinder, ellipsoid, rot_x, rot_y, rot_z
from ._skeleton import Skeleton
from ._urinary import Urinary
from ._voxel import Voxels

__all__ = [
    "IDENTITY",
    "Finding",
    "Mat3",
    "PatientBuild",
    "Phantom",
    "Primitive",
    "Vec3",
    "cylinder",
    "ellipsoid",
    "rot_x",
    "rot_y",
    "rot_z",
]


class Phantom(Skeleton, Urinary, Findings, Voxels):
    """The patient, as analytic primitives in the patient frame (see the module docstring)."""

    BLADDER_REFERENCE_ML = 250.0
    PELVIS_REFERENCE_ML = 7.0

    def __init__(self, build: PatientBuild) -> None:
        self.build = build
        self._rng = np.random.default_rng(build.seed)
        h = build.height_cm / 175.0
        self.scale_z = h
        self.ap_mm = build.ap_thickness_cm * 10.0
        bmi = build.weight_kg / (build.height_cm / 100.0) ** 2
        self.bmi = bmi
        # Abdominal width from AP thickness (adult abdomen ≈ 1.45× wider than deep).
        self.width_mm = self.ap_mm * 1.45
        self.fat_mm = float(np.clip(8.0 + 3.0 * (bmi - 22.0), 4.0, 60.0))
        self.landmarks: dict[str, Vec3] = {}
        self._kidney_frames: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        prims: list[Primitive] = []
        prims += self._body()
        prims += self._spine()
        prims += self._ribs()
        prims += self._pelvis()
        prims += self._retroperitoneum()
        for side in ("left", "right"):
            prims += self._kidney(side)
            prims += self._ureter(side)
        prims += self._vessels()
        prims += self._bowel_gas()
        prims += self._findings()
        self.primitives: tuple[Primitive, ...] = tuple(prims)
