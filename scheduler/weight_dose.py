"""Weight-based contrast: a protocol's ``volume_ml_per_kg`` made into a volume for one patient.

The weight-based bolus is the inject step's first phase: ``volume_ml_per_kg`` × the
patient's weight, clamped to the protocol's ``min_volume_ml`` … ``max_volume_ml`` and then
to what the room's injector limits leave beside the step's fixed phases (``limits.
max_volume_ml``). The exam runs a protocol with that volume written in (:func:`weigh`), so
everything downstream — preflight, the injector program, the record, ``resume`` — sees one
fixed volume. The figures are journaled at the inject step (:class:`ContrastByWeight`), shown
by ``fluoroctl plan`` and kept in ``summary.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.config import ConfigError, locate

from .exam.bus import EventBus, Recorded
from .exam.events import Event, Kind, StepStarted
from .protocol import InjectStep, Protocol
from .room import InjectorLimits

#: injectors are programmed in tenths of a millilitre
VOLUME_STEP_ML = 0.1


@dataclass(frozen=True, slots=True)
class WeightedVolume:
    """How one patient's weight-based bolus was worked out."""

    step: str
    weight_kg: float
    #: where the weight came from: order, command line, simulated patient
    weight_source: str
    ml_per_kg: float
    #: weight × mL/kg, before any limit
    computed_ml: float
    #: what the bolus phase is programmed with
    volume_ml: float
    #: the limit that set ``volume_ml`` when it differs from ``computed_ml``
    limited_by: str | None

    def describe(self) -> str:
        """``1 mL/kg × 82 kg = 82 mL``, with ``→ 80 mL (room max_volume_ml)`` when clamped."""
        text = f"{self.ml_per_kg:g} mL/kg × {self.weight_kg:g} kg = {self.computed_ml:g} mL"
        if self.limited_by is not None:
            text += f" → {self.volume_ml:g} mL ({self.limited_by})"
        return text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def step_index(protocol: Protocol) -> int | None:
    """Index of the weight-based inject step, if the protocol has one."""
    for i, step in enumerate(protocol.steps):
        if isinstance(step, InjectStep) and step.volume_ml_per_kg is not None:
            return i
    return None


def needs_weight(protocol: Protocol) -> bool:
    return step_index(protocol) is not None


def missing_weight(
    protocol: Protocol, protocol_path: Path | str | None, remedy: str
) -> ConfigError:
    """The one-line refusal of a weight-based protocol for a patient of unknown weight."""
    index = step_index(protocol)
    field = f"protocol.steps[{index}].volume_ml_per_kg"
    line = locate(protocol_path, field) if protocol_path is not None else None
    return ConfigError(
        protocol_path or protocol.name,
        line,
        field,
        f"weight-based contrast needs the patient's weight, and none is known: {remedy}",
    )


def weigh(
    protocol: Protocol,
    limits: InjectorLimits,
    weight_kg: float | None,
    *,
    weight_source: str,
    protocol_path: Path | str | None = None,
    remedy: str = "give --weight-kg KG",
) -> tuple[Protocol, WeightedVolume | None]:
    """``protocol`` with its weight-based bolus worked out for a patient of ``weight_kg``
    (unchanged, with None, when it has none). Raises :class:`ConfigError` when the weight is
    unknown or the room's limits leave no room for the bolus."""
    index = step_index(protocol)
    if index is None:
        return protocol, None
    step = protocol.steps[index]
    assert isinstance(step, InjectStep) and step.volume_ml_per_kg is not None
    if weight_kg is None:
        raise missing_weight(protocol, protocol_path, remedy)
    computed = _round(weight_kg * step.volume_ml_per_kg)
    volume, limited_by = computed, None
    assert step.max_volume_ml is not None  # the step's validator requires it
    if step.min_volume_ml is not None and volume < step.min_volume_ml:
        volume, limited_by = step.min_volume_ml, f"protocol min_volume_ml {step.min_volume_ml:g} mL"
    if volume > step.max_volume_ml:
        volume, limited_by = step.max_volume_ml, f"protocol max_volume_ml {step.max_volume_ml:g} mL"
    fixed = sum(p.volume_ml for p in step.phases[1:])
    room_left = _round(limits.max_volume_ml - fixed)
    if volume > room_left:
        volume, limited_by = room_left, f"room max_volume_ml {limits.max_volume_ml:g} mL"
        if fixed:
            limited_by += f" less {fixed:g} mL of fixed phases"
    if volume < 0.5:
        raise ConfigError(
            protocol_path or protocol.name,
            None,
            f"protocol.steps[{index}].phases",
            f"the room's max_volume_ml {limits.max_volume_ml:g} mL leaves no room for the "
            "weight-based bolus beside the fixed phases",
        )
    data = protocol.model_dump(mode="json", exclude_unset=True)
    raw = data["steps"][index]
    for name in ("volume_ml_per_kg", "max_volume_ml", "min_volume_ml"):
        raw.pop(name, None)
    raw["phases"][0]["volume_ml"] = volume
    weighted = WeightedVolume(
        step=step.id,
        weight_kg=weight_kg,
        weight_source=weight_source,
        ml_per_kg=step.volume_ml_per_kg,
        computed_ml=computed,
        volume_ml=volume,
        limited_by=limited_by,
    )
    return Protocol.model_validate(data), weighted


def _round(ml: float) -> float:
    return round(round(ml / VOLUME_STEP_ML) * VOLUME_STEP_ML, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContrastByWeight(Event):
    """The weight-based volume of the inject step, journaled as that step begins (line kind
    ``contrast_by_weight``)."""

    KIND = Kind.COMMAND
    weight_kg: float
    weight_source: str
    ml_per_kg: float
    computed_ml: float
    volume_ml: float
    limited_by: str | None

    @property
    def kind(self) -> str:
        return "contrast_by_weight"


def journal_at_inject_step(bus: EventBus, weighted: WeightedVolume) -> None:
    """Journal ``weighted`` when its inject step starts (once; not again on resume)."""
    done = False

    def on_event(recorded: Recorded) -> None:
        nonlocal done
        event = recorded.event
        if not done and isinstance(event, StepStarted) and event.step == weighted.step:
            done = True
            bus.emit(
                ContrastByWeight(
                    step=weighted.step,
                    weight_kg=weighted.weight_kg,
                    weight_source=weighted.weight_source,
                    ml_per_kg=weighted.ml_per_kg,
                    computed_ml=weighted.computed_ml,
                    volume_ml=weighted.volume_ml,
                    limited_by=weighted.limited_by,
                )
            )

    bus.subscribe(on_event, inline=True)


__all__ = [
    "ContrastByWeight",
    "WeightedVolume",
    "journal_at_inject_step",
    "missing_weight",
    "needs_weight",
    "weigh",
]
