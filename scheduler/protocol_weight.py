"""The file rules of weight-based contrast (an inject step's ``volume_ml_per_kg``), kept out of
:mod:`scheduler.protocol` so the protocol model stays one readable page. What the volume is
for a patient: :mod:`scheduler.weight_dose`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from drivers.config import LocatedValueError

#: most contrast per kg of body weight a protocol may ask for (IVU: 1–1.5 mL/kg of 300–350
#: mgI/mL; beyond 3 mL/kg is a typo, not a plan)
MAX_ML_PER_KG = 3.0

#: the inject step's weight-based fields (defaults None, given in the model)
MlPerKg = Annotated[
    float | None,
    Field(
        gt=0,
        le=MAX_ML_PER_KG,
        description="weight-based contrast: the first phase's volume is this × the patient's "
        "weight (from the order; on the simulator, the simulated patient's), clamped to "
        "min_volume_ml … max_volume_ml and to the room's max_volume_ml",
    ),
]
MaxVolume = Annotated[
    float | None,
    Field(
        ge=0.5,
        le=500,
        description="the protocol's ceiling of a weight-based bolus (required with "
        "volume_ml_per_kg); preflight checks the protocol at this volume",
    ),
]
MinVolume = Annotated[
    float | None,
    Field(
        ge=0.5,
        le=500,
        description="the floor of a weight-based bolus (a light patient still gets a "
        "diagnostic dose); only with volume_ml_per_kg",
    ),
]


def fill_weighted_phase(data: object) -> object:
    """An inject step's raw data with the weight-based bolus (its first phase, which has no
    ``volume_ml``) standing at the protocol's ceiling ``max_volume_ml`` — the worst case that
    validate and preflight check — until the patient's weight is known."""
    if not isinstance(data, dict) or data.get("volume_ml_per_kg") is None:
        return data
    phases = data.get("phases")
    if not isinstance(phases, list) or not phases or not isinstance(phases[0], dict):
        return data
    if "volume_ml" in phases[0]:
        raise LocatedValueError(
            ("phases", 0, "volume_ml"),
            "give volume_ml or the step's volume_ml_per_kg, not both (min_volume_ml and "
            "max_volume_ml bound a weight-based volume)",
        )
    ceiling = data.get("max_volume_ml")
    if ceiling is None:
        raise LocatedValueError(
            ("volume_ml_per_kg",),
            "a weight-based volume needs the protocol's ceiling: add max_volume_ml",
        )
    return {**data, "phases": [{**phases[0], "volume_ml": ceiling}, *phases[1:]]}


def check_weight_bounds(per_kg: float | None, minimum: float | None, maximum: float | None) -> None:
    """``min_volume_ml``/``max_volume_ml`` only with ``volume_ml_per_kg``, floor ≤ ceiling."""
    if per_kg is None:
        for name, value in (("max_volume_ml", maximum), ("min_volume_ml", minimum)):
            if value is not None:
                raise LocatedValueError(
                    (name,), f"{name} bounds a weight-based volume: only with volume_ml_per_kg"
                )
    elif minimum is not None and maximum is not None and minimum > maximum:
        raise LocatedValueError(
            ("min_volume_ml",), f"{minimum:g} mL is more than max_volume_ml {maximum:g} mL"
        )


def volume_optional_in_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of a phase: ``volume_ml`` is not required (a weight-based bolus has none
    in the file; the model fills it in), so editors do not ask for it."""
    schema["required"] = [r for r in schema.get("required", []) if r != "volume_ml"]
