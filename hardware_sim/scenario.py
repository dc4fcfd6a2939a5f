"""Simulated patient scenarios (configs/patients/*.yaml)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.config import load_model


class _Model(BaseModel):
    # NaN passes every range check and infinity every lower bound: neither means anything here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Build(_Model):
    # from a 10-kg toddler (≈ 75 cm, abdomen ≈ 10 cm deep) to a large adult
    height_cm: float = Field(default=172, ge=60, le=220)
    weight_kg: float = Field(default=72, ge=10, le=250)
    ap_thickness_cm: float = Field(default=22, ge=8, le=45)


KidneyVariant = Literal[
    "normal", "horseshoe", "duplex_left", "duplex_right", "pelvic_left", "pelvic_right"
]


class Kidneys(_Model):
    gfr_left_ml_min: float = Field(default=55, ge=0, le=120)
    gfr_right_ml_min: float = Field(default=55, ge=0, le=120)
    obstructed_left: bool = False
    obstructed_right: bool = False
    variant: KidneyVariant = Field(default="normal", description="congenital anomaly")
    tubular_transit_s: float = Field(
        default=90, ge=30, le=1200, description="nephron transit; longer = later nephrogram"
    )
    concentrating_ability: float = Field(
        default=1.0, gt=0.05, le=1, description="1 normal; CKD < 1: dilute urine, faint pyelogram"
    )
    perfusion: float = Field(
        default=1.0, gt=0, le=1.5, description="renal plasma space relative to normal"
    )


class FindingSpec(_Model):
    """A finding placed by anatomical ``site`` (or ``centre_mm`` in the patient frame)."""

    kind: Literal["stone", "staghorn", "cyst", "pelvis_tumour", "bladder_tumour"]
    side: Literal["left", "right"] = "left"
    site: (
        Literal[
            "pelvis", "upj", "ureter_mid", "pelvic_brim", "vuj",
            "upper_pole", "interpolar", "lower_pole",
        ]
        | None
    ) = None  # fmt: skip
    centre_mm: tuple[float, float, float] | None = None
    diameter_mm: float = Field(default=8, gt=1, le=120)
    obstructs: bool = Field(default=False, description="obstructs that side's outflow")

    @model_validator(mode="after")
    def _placed(self) -> FindingSpec:
        placed = self.site is not None or self.centre_mm is not None
        if self.kind in ("stone", "cyst") and not placed:
            raise ValueError(f"a {self.kind} needs a 'site' or a 'centre_mm'")
        return self


class Voiding(_Model):
    """How the patient voids: peak urine flow and the urine left behind."""

    max_flow_ml_s: float = Field(default=20, gt=1, le=60)  # Qmax
    residual_ml: float = Field(default=15, ge=0, le=600)  # post-void residual


class Access(_Model):
    """Vascular access and line: what the injector pushes contrast through."""

    gauge: int = Field(default=18, ge=14, le=24)
    cannula_length_mm: float = Field(default=32, gt=0, le=300)
    tubing_length_mm: float = Field(default=1500, gt=0, le=5000)
    tubing_inner_diameter_mm: float = Field(default=2.0, gt=0.3, le=5)


class Scenario(_Model):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(description="DICOM person name, e.g. Doe^Jane")
    sex: Literal["M", "F", "O"] = "O"
    birth_date: dt.date | None = None
    description: str = ""
    build: Build = Build()
    kidneys: Kidneys = Kidneys()
    hydration: float = Field(default=1.0, gt=0.2, le=3)
    bladder_start_ml: float = Field(default=50, ge=0, le=600)
    access: Access = Access()
    findings: list[FindingSpec] = Field(default_factory=list, max_length=12)
    voiding: Voiding = Voiding()
    #: the literature the scenario follows (free text)
    references: list[str] = Field(default_factory=list)
    #: contrast viscosity at body temperature: Omnipaque 300 = 6.3 mPa·s at 37 °C [S27]
    contrast_viscosity_mpa_s: float = Field(default=6.3, gt=0.5, le=30)
    seed: int = 0


def resolve_scenario_path(name_or_path: str, base_dir: Path) -> Path:
    """A bare name means ``configs/patients/<name>.yaml`` under ``base_dir``."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate if candidate.is_absolute() else (base_dir / candidate)
    return base_dir / "configs" / "patients" / f"{name_or_path}.yaml"


def load_scenario(path: Path | str) -> Scenario:
    return load_model(path, Scenario, root_key="patient")


def obstructed(scenario: Scenario, side: str) -> bool:
    """That side's outflow is obstructed: by the scenario's flag or an obstructing finding."""
    flag = scenario.kidneys.obstructed_left if side == "left" else scenario.kidneys.obstructed_right
    return flag or any(f.obstructs and f.side == side for f in scenario.findings)
