"""The exposure settings a protocol gives: radiographic and fluoroscopic technique, AEC."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    # as scheduler.protocol's: no extra keys, frozen, and neither NaN nor infinity
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AecSpec(_Model):
    """Automatic exposure control: the chamber fields end the exposure at the target exposure
    index (IEC 62494-1); ``mas`` becomes nominal, the back-up timer the limit."""

    fields: list[Literal["left", "centre", "right"]] = Field(default=["centre"], min_length=1)
    target_ei: float = Field(default=250.0, ge=10, le=10000)
    backup_ms: float = Field(default=1000.0, ge=1, le=6300)


class TechniqueSpec(_Model):
    kv: float = Field(ge=40, le=150)
    mas: float = Field(gt=0, le=1000)
    aec: AecSpec | None = Field(default=None, description="end the exposure by the AEC")
    ma: float = Field(default=500, ge=0.1, le=1250)
    focal_spot: Literal["small", "large"] = "large"
    filtration_mm_al: float = Field(default=2.5, ge=0, le=10)
    filtration_mm_cu: float = Field(default=0.0, ge=0, le=1)


class FluoroTechniqueSpec(_Model):
    kv: float = Field(ge=40, le=125)
    ma: float = Field(ge=0.1, le=100)
    pulse_ms: float = Field(default=8.0, ge=0.5, le=50)
    filtration_mm_al: float = Field(default=2.5, ge=0, le=10)
    filtration_mm_cu: float = Field(default=0.1, ge=0, le=1)
