"""The driver value objects a protocol step becomes, built in one place.

The engine sends exactly these, and preflight builds the same ones before the exam to let the
drivers' own range checks speak before anything is exposed.
"""

from __future__ import annotations

from drivers import FocalSpot, InjectionPhase, InjectionProgram, Technique
from drivers.carm import AecMode

from .protocol import Contrast, FluoroTechniqueSpec, InjectStep, TechniqueSpec


def technique_for(spec: TechniqueSpec) -> Technique:
    """The radiographic technique the engine sets for a capture or tomo sweep."""
    aec = spec.aec
    return Technique.from_mas(
        kv=spec.kv,
        mas=spec.mas,
        ma=spec.ma,
        focal_spot=FocalSpot(spec.focal_spot),
        filtration_mm_al=spec.filtration_mm_al,
        filtration_mm_cu=spec.filtration_mm_cu,
        aec=None if aec is None else AecMode(tuple(aec.fields), aec.target_ei, aec.backup_ms),
    )


def fluoro_technique_for(spec: FluoroTechniqueSpec) -> Technique:
    """The per-pulse technique the engine sets for a fluoroscopy run."""
    return Technique(
        kv=spec.kv,
        ma=spec.ma,
        exposure_ms=spec.pulse_ms,
        focal_spot=FocalSpot.SMALL,
        filtration_mm_al=spec.filtration_mm_al,
        filtration_mm_cu=spec.filtration_mm_cu,
    )


def injection_program_for(step: InjectStep, contrast: Contrast) -> InjectionProgram:
    """The program the engine arms the injector with."""
    return InjectionProgram(
        phases=tuple(InjectionPhase(p.flow_ml_s, p.volume_ml, p.delay_s) for p in step.phases),
        pressure_limit_kpa=step.limit_kpa,
        rise_time_s=step.rise_time_s,
        concentration_mg_ml=contrast.concentration_mg_ml,
    )
