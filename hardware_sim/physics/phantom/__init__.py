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
gas (colon frame, rectum, small-bowel bubbles) laid out by ``seed``; a urethra that carries
contrast while the patient voids.

Variants and findings (:class:`PatientBuild` ``kidney_variant`` and ``findings``): duplex,
horseshoe and pelvic kidneys (:mod:`._kidneys`, :mod:`._collecting`), calculi (staghorn,
ureteric), cysts that displace calyces, renal-pelvis and bladder tumours (filling defects)
(:mod:`._findings`).  docs/scenarios.md lists the scenarios that use them.

Children (height < :data:`PAEDIATRIC_BELOW_CM`): the body is built as a 175-cm adult with the
child's proportions of AP thickness and fat, then scaled uniformly by height/175 — spine,
pelvis, vessels and bowel shrink together; the kidneys keep the size of the paediatric growth
chart, length ≈ 0.05·height + 2.2 cm (Dinkel et al., Pediatr Radiol 1985;15:38–43: 6 cm at
75 cm, 9.7 cm at 150 cm), so they are relatively larger than in an adult, as in children.
Adults (≥ 150 cm) are built exactly as before: heights scale with height, widths do not.
"""

from __future__ import annotations

import numpy as np

from ._build import FINDING_KINDS, KIDNEY_VARIANTS, STONE_SITES, Finding, PatientBuild
from ._findings import Findings
from ._shapes import IDENTITY, Mat3, Primitive, Vec3, cylinder, ellipsoid, rot_x, rot_y, rot_z
from ._skeleton import Skeleton
from ._voxel import Voxels

__all__ = [
    "FINDING_KINDS",
    "IDENTITY",
    "KIDNEY_VARIANTS",
    "PAEDIATRIC_BELOW_CM",
    "STONE_SITES",
    "Finding",
    "Mat3",
    "PatientBuild",
    "Phantom",
    "Primitive",
    "Vec3",
    "cylinder",
    "ellipsoid",
    "paediatric_kidney_length_mm",
    "rot_x",
    "rot_y",
    "rot_z",
]

PAEDIATRIC_BELOW_CM = 150.0
ADULT_BUILD_CM = 175.0
ADULT_KIDNEY_LENGTH_MM = 110.0  # the build's kidney: semi-length 55 mm


def paediatric_kidney_length_mm(height_cm: float) -> float:
    """Mean renal length for a child's height (Dinkel 1985 growth chart, linear fit)."""
    return 10.0 * (0.05 * height_cm + 2.2)


def _scaled(p: Primitive, s: float) -> Primitive:
    c, a = p.centre, p.semi_axes
    return Primitive(
        p.kind,
        (c[0] * s, c[1] * s, c[2] * s),
        (a[0] * s, a[1] * s, a[2] * s),
        p.rotation,
        p.material,
        p.displaces,
        p.compartment,
        p.iodine_scale,
        p.name,
        None if p.arc_mm is None else p.arc_mm * s,
    )


class Phantom(Skeleton, Findings, Voxels):
    """The patient, as analytic primitives in the patient frame (see the module docstring)."""

    def __init__(self, build: PatientBuild) -> None:
        if build.kidney_variant not in KIDNEY_VARIANTS:
            raise ValueError(f"unknown kidney variant {build.kidney_variant!r}")
        self.build = build
        self._rng = np.random.default_rng(build.seed)
        child = build.height_cm < PAEDIATRIC_BELOW_CM
        self.scale = build.height_cm / ADULT_BUILD_CM if child else 1.0
        self.kidney_scale = (
            paediatric_kidney_length_mm(build.height_cm) / (ADULT_KIDNEY_LENGTH_MM * self.scale)
            if child
            else 1.0
        )
        h = 1.0 if child else build.height_cm / ADULT_BUILD_CM
        self.scale_z = h
        self.ap_mm = build.ap_thickness_cm * 10.0 / self.scale
        bmi = build.weight_kg / (build.height_cm / 100.0) ** 2
        self.bmi = bmi
        # Abdominal width from AP thickness (adult abdomen ≈ 1.45× wider than deep).
        self.width_mm = self.ap_mm * 1.45
        self.fat_mm = float(np.clip(8.0 + 3.0 * (bmi - 22.0), 4.0, 60.0))
        self.landmarks: dict[str, Vec3] = {}
        self._kidney_frames = {}
        self._kidney_size = {}
        self._ureter_curves = {}
        prims: list[Primitive] = []
        prims += self._body()
        prims += self._spine()
        prims += self._ribs()
        prims += self._pelvis()
        prims += self._retroperitoneum()
        for side in ("left", "right"):
            prims += self._kidney(side)
            prims += self._ureter(side)
        prims += self._isthmus()
        prims += self._vessels()
        prims += self._bowel_gas()
        prims += self._findings()
        prims += self._urethra()
        prims = self._organs(prims)
        self._build_landmarks = dict(self.landmarks)
        if child:
            s = self.scale
            prims = [_scaled(p, s) for p in prims]
            self.landmarks = {k: (v[0] * s, v[1] * s, v[2] * s) for k, v in self.landmarks.items()}
            self.ap_mm *= s
            self.width_mm *= s
            self.fat_mm *= s
            self.ureter_length_mm *= s
            self.ureter_tube_ml *= s**3
        self.primitives: tuple[Primitive, ...] = tuple(prims)

    def _organs(self, prims: list[Primitive]) -> list[Primitive]:
        """Liver, spleen, visceral fat, the colon with its haustra, stool and gas, the waist
        and the bones' finer shapes (:mod:`..organs`), in build coordinates after everything
        else: it draws from its own generator, so the seeded layout above stays as it is."""
        from ..organs import add_abdominal_anatomy  # organs builds on this package

        return add_abdominal_anatomy(self, prims)

    def collecting_system(self, side: str, volume_ml: float | None = None) -> list[Primitive]:
        """Urine spaces of one pelvicalyceal system (iodine-only primitives, compartment
        ``pelvis_<side>``), sized for ``volume_ml``: radii scale with (V/7 mL)^(1/3) (0.7–1.8);
        distended systems (V > 15 mL) lose the papillary impressions (blunted calyces).  A
        duplex kidney's two systems share the compartment; a pelvis tumour is a negative
        (iodine-removing) primitive among them."""
        return self._out(self._collecting_build(side, volume_ml))

    def bladder_primitives(self, volume_ml: float) -> list[Primitive]:
        """The bladder urine for a given volume (the base stays behind the symphysis, the dome
        rises as it fills: semi-axes ∝ volume^(1/3)), then any bladder tumour (an
        iodine-removing primitive on the bladder wall)."""
        return self._out(self._bladder_build(volume_ml))

    def bladder_primitive(self, volume_ml: float) -> Primitive:
        """The bladder urine alone (see :meth:`bladder_primitives`)."""
        return self.bladder_primitives(volume_ml)[0]

    def kidney_midplane_mm(self) -> float:
        """Height of the kidneys' mid-plane above the table top (supine; the mean of the two
        kidney centres' AP positions above the posterior body surface)."""
        ys = [self.landmarks[f"kidney_{s}"][1] for s in ("left", "right")]
        return sum(ys) / 2.0 + self.ap_mm / 2.0

    def _out(self, prims: list[Primitive]) -> list[Primitive]:
        return prims if self.scale == 1.0 else [_scaled(p, self.scale) for p in prims]
