"""What a phantom is built from: the patient's build and optional findings."""

from __future__ import annotations

from dataclasses import dataclass

from ._shapes import Vec3


@dataclass(frozen=True)
class Finding:
    """An optional finding: ``kind`` "stone" (calcium oxalate) or "cyst" (non-enhancing mass
    inside a kidney; ``side`` names the kidney whose enhancement it removes)."""

    kind: str
    centre_mm: Vec3
    diameter_mm: float = 6.0
    side: str = "left"


@dataclass(frozen=True)
class PatientBuild:
    height_cm: float = 175.0
    weight_kg: float = 75.0
    ap_thickness_cm: float = 22.0
    seed: int = 0  # small anatomical variation / bowel gas layout
    findings: tuple[Finding, ...] = ()
