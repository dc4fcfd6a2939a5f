"""Simulated patient scenarios (configs/patients/*.yaml)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from drivers.config import load_model


class _Model(BaseModel):
    # NaN passes every range check and infinity every lower bound: neither means anything here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Build(_Model):
    height_cm: float = Field(default=172, ge=120, le=220)
    weight_kg: float = Field(default=72, ge=30, le=250)
    ap_thickness_cm: float = Field(default=22, ge=12, le=45)


class Kidneys(_Model):
    gfr_left_ml_min: float = Field(default=55, ge=0, le=120)
    gfr_right_ml_min: float = Field(default=55, ge=0, le=120)
    obstructed_left: bool = False
    obstructed_right: bool = False


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
