"""What a phantom is built from: the patient's build, kidney variant and findings."""

from __future__ import annotations

from dataclasses import dataclass

from ._shapes import Vec3

#: kidney variants (congenital anomalies) a phantom can be built with
KIDNEY_VARIANTS = (
    "normal",
    "horseshoe",
    "duplex_left",
    "duplex_right",
    "pelvic_left",
    "pelvic_right",
)
#: where a ``site``-placed finding goes (resolved by the phantom from its own anatomy)
STONE_SITES = ("pelvis", "upj", "ureter_mid", "pelvic_brim", "vuj")
KIDNEY_SITES = ("upper_pole", "interpolar", "lower_pole")
FINDING_KINDS = ("stone", "staghorn", "cyst", "pelvis_tumour", "bladder_tumour")


@dataclass(frozen=True)
class Finding:
    """An optional finding.

    ``kind``: "stone" (calcium oxalate; at ``centre_mm`` or at a ``site`` of
    :data:`STONE_SITES` on ``side``), "staghorn" (a calculus casting the pelvis and calyces of
    ``side``), "cyst" (a non-enhancing mass of ``side``'s kidney at ``centre_mm`` or a
    :data:`KIDNEY_SITES` site; calyces within reach are pushed aside), "pelvis_tumour" (a
    urothelial mass filling the renal pelvis lumen of ``side``: a filling defect) or
    "bladder_tumour" (a mass on ``side``'s bladder wall).  ``diameter_mm`` is its size."""

    kind: str
    centre_mm: Vec3 = (0.0, 0.0, 0.0)
    diameter_mm: float = 6.0
    side: str = "left"
    site: str | None = None


@dataclass(frozen=True)
class PatientBuild:
    height_cm: float = 175.0
    weight_kg: float = 75.0
    ap_thickness_cm: float = 22.0
    seed: int = 0  # small anatomical variation / bowel gas layout
    findings: tuple[Finding, ...] = ()
    kidney_variant: str = "normal"  # one of KIDNEY_VARIANTS
    sex: str = "O"  # "M": male urethra (≈ 20 cm); otherwise female (≈ 4 cm)
