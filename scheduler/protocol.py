"""Protocol files: what an exam does, validated before any device is touched.

A protocol is an ordered list of steps. Steps with ``at`` are anchored to the injector's
*confirmed* injection start; steps without it run as soon as the step before them is done.
A capture whose view names a different patient position than the current one is a
*repositioning capture*: the operator turns the patient, the table moves, and the exposure
fires once table and patient are reported stable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from drivers.config import LocatedValueError, load_model
from drivers.injector import KPA_PER_PSI

from .policy import FaultPolicy

# Re-exported: these names have always been importable from scheduler.protocol.
from .protocol_duration import MAX_DURATION_S as MAX_DURATION_S
from .protocol_duration import Duration
from .protocol_duration import parse_duration as parse_duration
from .protocol_technique import AecSpec as AecSpec
from .protocol_technique import FluoroTechniqueSpec as FluoroTechniqueSpec
from .protocol_technique import TechniqueSpec as TechniqueSpec
from .protocol_weight import (
    MaxVolume,
    MinVolume,
    MlPerKg,
    check_weight_bounds,
    fill_weighted_phase,
    volume_optional_in_schema,
)

Position = Literal["supine", "prone", "lpo", "rpo"]
#: what happens to a capture that falls due while the exam is paused
WhenPaused = Literal["take_late", "miss"]


class _Model(BaseModel):
    # allow_inf_nan=False: NaN slips through every range check (NaN < 0 is False) and
    # infinity through every lower bound; no field of these files means either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FieldSpec(_Model):
    """A collimated field: where its centre lies on the patient and its size at the detector."""

    centre_mm: float = Field(ge=-600, le=600, description="cranio-caudal, 0 = iliac crest")
    width_mm: float = Field(ge=10, le=430)
    height_mm: float = Field(ge=10, le=430)


DEFAULT_FIELDS: dict[str, FieldSpec] = {
    # KUB 35 × 43 cm centred on the iliac crest [S7][S8]
    "kub": FieldSpec(centre_mm=0, width_mm=350, height_mm=430),
    # kidneys: hila at L1–L2, about 12 cm above the crest [S52]
    "kidneys": FieldSpec(centre_mm=120, width_mm=350, height_mm=260),
    # bladder: centred 5 cm above the symphysis [S11]
    "bladder": FieldSpec(centre_mm=-150, width_mm=260, height_mm=220),
}


class Angulation(_Model):
    angle_deg: float = Field(ge=0, le=45)
    direction: Literal["caudad", "cranial"]

    @property
    def secondary_angle_deg(self) -> float:
        """DICOM positioner secondary angle: cranial positive."""
        return self.angle_deg if self.direction == "cranial" else -self.angle_deg


class ViewSpec(_Model):
    position: Position | None = Field(
        default=None, description="patient position; omitted = keep the current one"
    )
    field: str = "kub"
    angulation: Angulation | None = None


class _Step(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=40)
    label: str = ""
    at: Duration | None = Field(
        default=None, description="time after the confirmed injection start (e.g. 5min)"
    )

    @field_validator("at", mode="before")
    @classmethod
    def _parse_at(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)

    @property
    def title(self) -> str:
        return self.label or self.id


class _Acquisition(_Step):
    """Fields every acquiring step (capture, fluoro, tomo) shares."""

    on_decline: Literal["skip", "abort", "ask"] | None = None  # its patient turn declined
    when_paused: WhenPaused | None = Field(
        default=None,
        description="if this step falls due while the exam is paused: take_late (within "
        "late_window_s after resuming) or miss; default: the protocol's when_paused",
    )
    late_window_s: float | None = Field(
        default=None,
        ge=0,
        le=600,
        description="how late a paused-over capture may still be taken; default tolerance_s",
    )


class CaptureStep(_Acquisition):
    type: Literal["capture"]
    view: ViewSpec = ViewSpec()
    technique: TechniqueSpec | None = None
    tolerance_s: float = Field(default=1.0, ge=0, le=600)
    settle_s: float = Field(
        default=2.0, ge=0, le=60, description="wait after motion complete before exposing"
    )


class FluoroStep(_Acquisition):
    type: Literal["fluoro"]
    view: ViewSpec = ViewSpec()
    pulse_rate_hz: float = Field(ge=0.5, le=30)
    duration_s: float = Field(ge=0.1, le=120)
    technique: FluoroTechniqueSpec
    tolerance_s: float = Field(default=1.0, ge=0, le=600)
    settle_s: float = Field(default=2.0, ge=0, le=60)


#: Kidney mid-plane assumed for planning when layers are given as offsets: about a third of
#: a 22-cm adult's AP diameter above the table [S10][S12][S22] (the exam resolves each patient's)
NOMINAL_KIDNEY_MIDPLANE_MM = 75.0


def _layers_in_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of a tomo step: layer heights *or* offsets from the kidney mid-plane (the
    model fills the heights in from offsets), so editors ask for one of the two."""
    schema["required"] = [r for r in schema.get("required", []) if r != "layer_heights_mm"]
    schema["oneOf"] = [{"required": ["layer_heights_mm"]}, {"required": ["layer_offsets_mm"]}]


class TomoStep(_Acquisition):
    """Linear tomosynthesis (nephrotomography): one sweep, one image per layer height.

    Layers are given either as heights above the table top (``layer_heights_mm``) or as
    offsets from the patient's kidney mid-plane (``layer_offsets_mm``); with offsets,
    ``layer_heights_mm`` holds the heights for a nominal 75-mm mid-plane (what planning and
    preflight see) and the exam resolves the patient's own (:mod:`scheduler.tomo_layers`)."""

    model_config = ConfigDict(json_schema_extra=_layers_in_schema)

    type: Literal["tomo"]
    view: ViewSpec = ViewSpec(field="kidneys")
    layer_heights_mm: list[float] = Field(
        min_length=1, max_length=12, description="above the table top, e.g. [80, 90, 100]"
    )
    layer_offsets_mm: list[float] | None = Field(
        default=None,
        min_length=1,
        max_length=12,
        description="instead of layer_heights_mm: from the kidneys' mid-plane (+ anterior), "
        "e.g. [-10, 0, 10]",
    )

    @model_validator(mode="before")
    @classmethod
    def _offsets(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("layer_offsets_mm") is None:
            return data
        offsets = data["layer_offsets_mm"]
        if not isinstance(offsets, list) or not all(
            isinstance(o, int | float) and not isinstance(o, bool) for o in offsets
        ):
            return data  # the field's own validation names the problem
        nominal = [NOMINAL_KIDNEY_MIDPLANE_MM + float(o) for o in offsets]
        given = data.get("layer_heights_mm")
        if given is not None and given != nominal:
            raise ValueError("give layer_heights_mm or layer_offsets_mm, not both")
        return {**data, "layer_heights_mm": nominal}

    @field_validator("layer_offsets_mm")
    @classmethod
    def _offsets_range(cls, value: list[float] | None) -> list[float] | None:
        for o in value or ():
            if not -60.0 <= o <= 60.0:
                raise ValueError(f"layer offset {o:g} mm outside ±60 mm of the kidney mid-plane")
        return value

    sweep_deg: float = Field(default=30.0, ge=5, le=60)
    projections: int = Field(default=25, ge=3, le=101)
    technique: TechniqueSpec | None = Field(
        default=None, description="the whole sweep's technique (mAs shared by projections)"
    )
    tolerance_s: float = Field(default=2.0, ge=0, le=600)
    settle_s: float = Field(default=2.0, ge=0, le=60)

    @field_validator("layer_heights_mm")
    @classmethod
    def _heights(cls, value: list[float]) -> list[float]:
        for h in value:
            if not 10.0 <= h <= 300.0:
                raise ValueError(f"layer height {h:g} mm outside 10–300 mm above the table")
        return value


class PhaseSpec(_Model):
    model_config = ConfigDict(json_schema_extra=volume_optional_in_schema)

    flow_ml_s: float = Field(ge=0.1, le=30)
    volume_ml: float = Field(ge=0.5, le=500, description="not in a weight-based bolus")
    delay_s: float = Field(default=0, ge=0, le=600)


class InjectStep(_Step):
    type: Literal["inject"]
    phases: list[PhaseSpec] = Field(min_length=1, max_length=8)  # weight-based: 1st = bolus
    volume_ml_per_kg: MlPerKg = None
    max_volume_ml: MaxVolume = None
    min_volume_ml: MinVolume = None
    # the injector takes 100–8300 kPa (drivers.injector.InjectionProgram); 15 psi ≈ 103 kPa
    pressure_limit_kpa: float | None = Field(default=None, ge=100, le=8300)
    pressure_limit_psi: float | None = Field(default=None, ge=15, le=1200)
    rise_time_s: float = Field(default=0.5, ge=0, le=10)
    confirm: bool = Field(default=True, description="operator confirms before the start")

    @model_validator(mode="before")
    @classmethod
    def _weighted_phase(cls, data: object) -> object:
        return fill_weighted_phase(data)

    @model_validator(mode="after")
    def _one_pressure_limit(self) -> InjectStep:
        check_weight_bounds(self.volume_ml_per_kg, self.min_volume_ml, self.max_volume_ml)
        if (self.pressure_limit_kpa is None) == (self.pressure_limit_psi is None):
            raise ValueError("give exactly one of pressure_limit_kpa or pressure_limit_psi")
        return self

    @property
    def limit_kpa(self) -> float:
        if self.pressure_limit_kpa is not None:
            return self.pressure_limit_kpa
        assert self.pressure_limit_psi is not None
        return self.pressure_limit_psi * KPA_PER_PSI

    @property
    def volume_ml(self) -> float:
        return sum(p.volume_ml for p in self.phases)


#: ``void``: the patient voids (off the table) and is back; ``voiding``: the patient starts to
#: void on the table now, for a voiding film of the urethra taken by the next capture
Action = Literal["compression_on", "compression_off", "void", "voiding", "reposition", "note"]


class PromptStep(_Step):
    type: Literal["prompt"]
    action: Action = "note"
    message: str
    on_decline: Literal["skip", "abort", "ask"] | None = None  # see docs/protocols.md
    position: Position | None = None

    @model_validator(mode="after")
    def _position_iff_reposition(self) -> PromptStep:
        if (self.action == "reposition") != (self.position is not None):
            raise ValueError("'position' is required for action reposition, and only for it")
        return self


Step = Annotated[
    CaptureStep | FluoroStep | TomoStep | InjectStep | PromptStep, Field(discriminator="type")
]


class Contrast(_Model):
    agent: str = Field(min_length=1, max_length=64)
    concentration_mg_ml: float = Field(gt=0, le=400)


class Protocol(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    procedure_code: str = Field(default="74400", description="CPT code")
    references: list[str] = []
    contrast: Contrast | None = None
    technique: TechniqueSpec = Field(description="default radiographic technique")
    fields: dict[str, FieldSpec] = {}
    when_paused: WhenPaused = Field(
        default="take_late",
        description="captures falling due during a pause: take_late (within each step's "
        "late window) or miss; anchored time points never move",
    )
    faults: FaultPolicy | None = Field(
        default=None, description="overrides of the room's fault policy, field by field"
    )
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_steps(self) -> Protocol:
        seen: set[str] = set()
        injected = False
        last_at = 0.0
        acquisition_at: dict[float, str] = {}  # time point -> the acquiring step due then
        fields = self.all_fields
        for index, step in enumerate(self.steps):
            where: tuple[str | int, ...] = ("steps", index)
            if step.id in seen:
                raise LocatedValueError(
                    (
                        *where,
                        "id",
                    ),
                    f"step id {step.id!r} is used twice",
                )
            seen.add(step.id)
            if isinstance(step, InjectStep):
                if injected:
                    raise LocatedValueError(where, "only one injection step is supported")
                if self.contrast is None:
                    raise LocatedValueError(where, "an injection needs a 'contrast:' section")
                injected = True
            if step.at is not None:
                if not injected:
                    raise LocatedValueError(
                        (
                            *where,
                            "at",
                        ),
                        "'at' is relative to the injection start, "
                        "but no injection step comes before this step",
                    )
                if step.at < last_at:
                    raise LocatedValueError(
                        (
                            *where,
                            "at",
                        ),
                        f"{step.at:g} s is earlier than a preceding timed step ({last_at:g} s); "
                        "timed steps must be in time order",
                    )
                last_at = step.at
                if isinstance(step, CaptureStep | FluoroStep | TomoStep):
                    if step.at in acquisition_at:
                        raise LocatedValueError(
                            (*where, "at"),
                            f"{step.at:g} s is also the time point of step "
                            f"{acquisition_at[step.at]!r}: the C-arm takes one acquisition at a "
                            "time, so two acquisitions cannot share one time point",
                        )
                    acquisition_at[step.at] = step.id
            if (
                isinstance(step, CaptureStep | FluoroStep | TomoStep)
                and step.view.field not in fields
            ):
                raise LocatedValueError(
                    (*where, "view", "field"),
                    f"unknown field {step.view.field!r} (known: {', '.join(sorted(fields))})",
                )
        return self

    @property
    def all_fields(self) -> dict[str, FieldSpec]:
        return {**DEFAULT_FIELDS, **self.fields}

    @property
    def inject_step(self) -> InjectStep | None:
        return next((s for s in self.steps if isinstance(s, InjectStep)), None)


def load_protocol(path: Path | str) -> Protocol:
    return load_model(path, Protocol, root_key="protocol")
