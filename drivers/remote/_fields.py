"""Value types ↔ flat wire fields (docs/wire-protocol.md §2.1: scalars only, units in names).

Shared by the reference drivers and the simulated devices so both ends agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..carm import (
    AecMode,
    CArmCapabilities,
    CArmStatus,
    CollimationField,
    Dose,
    FluoroRequest,
    FocalSpot,
    PositionerPose,
    Technique,
    TomoRequest,
)
from ..injector import (
    InjectionPhase,
    InjectionProgram,
    InjectorFault,
    InjectorState,
    InjectorStatus,
)
from ..table import TablePosition, TableStatus
from ..wire import Scalar

Fields = dict[str, Scalar]


class FieldError(ValueError):
    """A wire message lacks a field or carries one of the wrong type."""


def num(fields: Mapping[str, Scalar], key: str) -> float:
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(f"field {key!r} must be a number, got {value!r}")
    return float(value)


def opt_num(fields: Mapping[str, Scalar], key: str) -> float | None:
    return None if fields.get(key) is None else num(fields, key)


def integer(fields: Mapping[str, Scalar], key: str) -> int:
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"field {key!r} must be an integer, got {value!r}")
    return value


def opt_integer(fields: Mapping[str, Scalar], key: str) -> int | None:
    return None if fields.get(key) is None else integer(fields, key)


def text(fields: Mapping[str, Scalar], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise FieldError(f"field {key!r} must be a string, got {value!r}")
    return value


def flag(fields: Mapping[str, Scalar], key: str) -> bool:
    value = fields.get(key)
    if not isinstance(value, bool):
        raise FieldError(f"field {key!r} must be true or false, got {value!r}")
    return value


#: Event and status fields that are lists on the device and travel as comma-separated strings
#: (the wire object is flat). The host side turns them back into tuples of str with
#: :func:`names`, so the scheduler sees the same type over a link as from the in-process
#: simulator (a string would be iterated character by character).
LIST_FIELDS = frozenset({"faults"})


def names(value: Scalar) -> tuple[str, ...]:
    """A list field's wire string → tuple of str (``""`` and ``None`` → ``()``)."""
    return tuple(s for s in str(value or "").split(",") if s)


def scalar(value: object) -> Scalar:
    """Device event data → a wire scalar (sequences become comma-separated strings)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value)
    return str(value)


# -- C-arm ------------------------------------------------------------------------------------
def technique_fields(t: Technique) -> Fields:
    fields: Fields = {
        "kv": t.kv,
        "ma": t.ma,
        "exposure_ms": t.exposure_ms,
        "focal_spot": t.focal_spot.value,
        "filtration_mm_al": t.filtration_mm_al,
        "filtration_mm_cu": t.filtration_mm_cu,
    }
    if t.aec is not None:  # absent fields: no AEC (a device that predates it reads the same)
        fields["aec_fields"] = ",".join(t.aec.fields)
        fields["aec_target_ei"] = t.aec.target_ei
        fields["aec_backup_ms"] = t.aec.backup_ms
    return fields


def technique_from(f: Mapping[str, Scalar], prefix: str = "") -> Technique:
    return Technique(
        kv=num(f, prefix + "kv"),
        ma=num(f, prefix + "ma"),
        exposure_ms=num(f, prefix + "exposure_ms"),
        focal_spot=FocalSpot(text(f, prefix + "focal_spot")),
        filtration_mm_al=num(f, prefix + "filtration_mm_al"),
        filtration_mm_cu=num(f, prefix + "filtration_mm_cu"),
        aec=_aec_from(f, prefix),
    )


def _aec_from(f: Mapping[str, Scalar], prefix: str) -> AecMode | None:
    if prefix + "aec_fields" not in f:
        return None
    return AecMode(
        tuple(text(f, prefix + "aec_fields").split(",")),
        num(f, prefix + "aec_target_ei"),
        num(f, prefix + "aec_backup_ms"),
    )


def pose_fields(p: PositionerPose) -> Fields:
    return {
        "primary_angle_deg": p.primary_angle_deg,
        "secondary_angle_deg": p.secondary_angle_deg,
        "sid_mm": p.sid_mm,
    }


def pose_from(f: Mapping[str, Scalar]) -> PositionerPose:
    return PositionerPose(
        num(f, "primary_angle_deg"), num(f, "secondary_angle_deg"), num(f, "sid_mm")
    )


def collimation_fields(c: CollimationField) -> Fields:
    return {"width_mm": c.width_mm, "height_mm": c.height_mm}


def collimation_from(f: Mapping[str, Scalar]) -> CollimationField:
    return CollimationField(num(f, "width_mm"), num(f, "height_mm"))


def dose_fields(d: Dose) -> Fields:
    return {
        "reference_air_kerma_mgy": d.reference_air_kerma_mgy,
        "entrance_air_kerma_mgy": d.entrance_air_kerma_mgy,
        "dap_gy_cm2": d.dap_gy_cm2,
    }


def dose_from(f: Mapping[str, Scalar]) -> Dose:
    return Dose(
        num(f, "reference_air_kerma_mgy"), num(f, "entrance_air_kerma_mgy"), num(f, "dap_gy_cm2")
    )


def fluoro_fields(r: FluoroRequest) -> Fields:
    return {"pulse_rate_hz": r.pulse_rate_hz, "duration_s": r.duration_s} | technique_fields(
        r.technique
    )


def fluoro_from(f: Mapping[str, Scalar]) -> FluoroRequest:
    return FluoroRequest(num(f, "pulse_rate_hz"), num(f, "duration_s"), technique_from(f))


def tomo_fields(r: TomoRequest) -> Fields:
    out: Fields = {
        "sweep_deg": r.sweep_deg,
        "projections": r.projections,
        "layers": len(r.layer_heights_mm),
    }
    for i, h in enumerate(r.layer_heights_mm, 1):
        out[f"layer{i}_height_mm"] = h
    return out | technique_fields(r.technique)


def tomo_from(f: Mapping[str, Scalar]) -> TomoRequest:
    heights = tuple(num(f, f"layer{i}_height_mm") for i in range(1, integer(f, "layers") + 1))
    return TomoRequest(heights, technique_from(f), num(f, "sweep_deg"), integer(f, "projections"))


def carm_status_fields(s: CArmStatus) -> Fields:
    out: Fields = {
        "ready": s.ready,
        "beam_on": s.beam_on,
        "moving": s.moving,
        "fluoro_time_s": s.fluoro_time_s,
        "cumulative_reference_air_kerma_mgy": s.cumulative_reference_air_kerma_mgy,
        "cumulative_dap_gy_cm2": s.cumulative_dap_gy_cm2,
        "faults": ",".join(s.faults),
        "has_technique": s.technique is not None,
        "armed": s.armed,
    }
    if s.technique is not None:
        out |= technique_fields(s.technique)
    return out | pose_fields(s.pose) | collimation_fields(s.collimation)


def carm_status_from(f: Mapping[str, Scalar]) -> CArmStatus:
    return CArmStatus(
        ready=flag(f, "ready"),
        beam_on=flag(f, "beam_on"),
        technique=technique_from(f) if flag(f, "has_technique") else None,
        pose=pose_from(f),
        collimation=collimation_from(f),
        moving=flag(f, "moving"),
        fluoro_time_s=num(f, "fluoro_time_s"),
        cumulative_reference_air_kerma_mgy=num(f, "cumulative_reference_air_kerma_mgy"),
        cumulative_dap_gy_cm2=num(f, "cumulative_dap_gy_cm2"),
        faults=names(f.get("faults")),
        armed=f.get("armed") is True,  # absent on devices without timed exposures
    )


def capabilities_fields(c: CArmCapabilities) -> Fields:
    return {
        "exposure_latency_s": c.exposure_latency_s,
        "readout_s": c.readout_s,
        "timed_trigger": c.timed_trigger,
        "max_sync_s": c.max_sync_s,
    }


def capabilities_from(f: Mapping[str, Scalar]) -> CArmCapabilities:
    return CArmCapabilities(
        exposure_latency_s=num(f, "exposure_latency_s"),
        readout_s=num(f, "readout_s"),
        timed_trigger=flag(f, "timed_trigger"),
        max_sync_s=opt_num(f, "max_sync_s") or 0.0,
    )


# -- table ------------------------------------------------------------------------------------
def position_fields(p: TablePosition) -> Fields:
    return {
        "longitudinal_mm": p.longitudinal_mm,
        "lateral_mm": p.lateral_mm,
        "height_mm": p.height_mm,
        "tilt_deg": p.tilt_deg,
    }


def position_from(f: Mapping[str, Scalar]) -> TablePosition:
    return TablePosition(
        num(f, "longitudinal_mm"), num(f, "lateral_mm"), num(f, "height_mm"), num(f, "tilt_deg")
    )


def table_status_fields(s: TableStatus) -> Fields:
    return position_fields(s.position) | {
        "moving": s.moving,
        "motion_completed_t_s": s.motion_completed_at_s,
        "faults": ",".join(s.faults),
    }


# -- injector ---------------------------------------------------------------------------------
def program_fields(p: InjectionProgram) -> Fields:
    out: Fields = {
        "phases": len(p.phases),
        "pressure_limit_kpa": p.pressure_limit_kpa,
        "rise_time_s": p.rise_time_s,
        "concentration_mg_ml": p.concentration_mg_ml,
    }
    for i, ph in enumerate(p.phases, 1):
        out[f"phase{i}_flow_ml_s"] = ph.flow_ml_s
        out[f"phase{i}_volume_ml"] = ph.volume_ml
        out[f"phase{i}_delay_s"] = ph.delay_s
    return out


def program_from(f: Mapping[str, Scalar]) -> InjectionProgram:
    phases = tuple(
        InjectionPhase(
            num(f, f"phase{i}_flow_ml_s"),
            num(f, f"phase{i}_volume_ml"),
            num(f, f"phase{i}_delay_s"),
        )
        for i in range(1, integer(f, "phases") + 1)
    )
    return InjectionProgram(
        phases,
        num(f, "pressure_limit_kpa"),
        num(f, "rise_time_s"),
        num(f, "concentration_mg_ml"),
    )


def injector_status_fields(s: InjectorStatus) -> Fields:
    """Times are the device's own clock (``*_t_s``); the host maps them onto its clock.

    The since-reset counters (``delivered_total_ml``, ``injections_started``) are null for an
    injector that keeps none."""
    return {
        "state": s.state.value,
        "delivered_ml": s.delivered_ml,
        "flow_ml_s": s.flow_ml_s,
        "pressure_kpa": s.pressure_kpa,
        "phase": s.phase_index,
        "started_t_s": s.started_at_s,
        "ended_t_s": s.ended_at_s,
        "faults": ",".join(f.value for f in s.faults),
        "delivered_total_ml": s.delivered_total_ml,
        "injections_started": s.injections_started,
    }


def injector_status_from(
    f: Mapping[str, Scalar], to_host: Callable[[float], float]
) -> InjectorStatus:
    """A status reply or event; device times mapped onto the host clock by ``to_host``."""
    started = opt_num(f, "started_t_s")
    ended = opt_num(f, "ended_t_s")
    phase = f.get("phase")
    return InjectorStatus(
        state=InjectorState(text(f, "state")),
        delivered_ml=num(f, "delivered_ml"),
        flow_ml_s=num(f, "flow_ml_s"),
        pressure_kpa=num(f, "pressure_kpa"),
        phase_index=phase if isinstance(phase, int) and not isinstance(phase, bool) else None,
        started_at_s=None if started is None else to_host(started),
        ended_at_s=None if ended is None else to_host(ended),
        faults=tuple(InjectorFault(n) for n in names(f.get("faults"))),
        # absent or null: a device that keeps no counters (the ledger then judges one arm)
        delivered_total_ml=opt_num(f, "delivered_total_ml"),
        injections_started=opt_integer(f, "injections_started"),
    )


def table_status_from(f: Mapping[str, Scalar], to_host: Callable[[float], float]) -> TableStatus:
    done = opt_num(f, "motion_completed_t_s")
    return TableStatus(
        position=position_from(f),
        moving=flag(f, "moving"),
        motion_completed_at_s=None if done is None else to_host(done),
        faults=names(f.get("faults")),
    )
