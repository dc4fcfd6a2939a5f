"""Preflight: everything about an exam that can be checked before the first exposure.

The engine checks the injection program against the room at arm time, and the drivers check
their value ranges when a command is built; both come *after* the scout film has X-rayed the
patient. Preflight builds the same value objects the engine will build, runs the same room
and dose checks, and estimates the timeline, so ``validate``, ``plan`` and ``run`` refuse a
protocol that cannot be carried out before any device is touched.

Findings are errors (the exam would certainly fail or skip a step) or warnings (an estimate
says a film will probably be missed). Each names a field of the protocol (or room) file, so
:func:`raise_on_errors` and :func:`describe` can point at its line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drivers import (
    CollimationField,
    FluoroRequest,
    InjectionPhase,
    PositionerPose,
    TablePosition,
    Technique,
    TomoRequest,
)
from drivers.config import ConfigError, format_loc, line_of, load_yaml, parse_loc

from .commands import fluoro_technique_for, injection_program_for, technique_for
from .dose_estimate import SID_MM
from .protocol import (
    CaptureStep,
    FluoroStep,
    InjectStep,
    Protocol,
    TechniqueSpec,
    TomoStep,
)
from .room import Room
from .safety import DoseMonitor, InterlockRefused, check_injection_program
from .timeline_estimate import estimate_timeline

Severity = Literal["error", "warning"]
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """One problem: ``field`` is the full path in the file, e.g. ``protocol.steps[3].at``."""

    severity: Severity
    field: str
    message: str


def _error(loc: Loc, message: str) -> Finding:
    return Finding("error", format_loc(loc), message)


def _warning(loc: Loc, message: str) -> Finding:
    return Finding("warning", format_loc(loc), message)


# -- the value objects the engine builds: scheduler/commands.py (the engine uses the same) --
# -- the checks ----------------------------------------------------------------------------
def preflight(protocol: Protocol, room: Room) -> list[Finding]:
    """Every check of ``protocol`` against ``room`` that needs no device, in file order
    within each kind: driver value ranges, the room's injector limits, dose limits, then
    the timeline. Fields are paths in the protocol file."""
    return [
        *_driver_ranges(protocol),
        *_injection_limits(protocol, room),
        *_dose(protocol, room),
        *_timeline(protocol, room),
    ]


def _driver_refusal(exc: ValueError) -> tuple[str, str]:
    """(the driver's parameter name, the message) of a value type's range error."""
    text = str(exc)
    name = text.split("=", 1)[0] if "=" in text and " " not in text.split("=", 1)[0] else ""
    return name, f"outside the device driver's accepted range: {text}"


def _driver_ranges(protocol: Protocol) -> list[Finding]:
    out: list[Finding] = []
    root: Loc = ("protocol",)

    def technique(spec: TechniqueSpec, loc: Loc) -> Technique | None:
        try:
            return technique_for(spec)
        except ValueError as exc:
            name, message = _driver_refusal(exc)
            if name == "exposure_ms":  # derived from mas / ma: point at mas, say why
                ms = spec.mas / spec.ma * 1000.0
                out.append(
                    _error(
                        (*loc, "mas"),
                        f"{spec.mas:g} mAs at {spec.ma:g} mA is a {ms:g} ms exposure; the "
                        "generator driver takes 0.5–6300 ms (change mas or ma)",
                    )
                )
            else:
                out.append(_error((*loc, name) if name else loc, message))
            return None

    default = technique(protocol.technique, (*root, "technique"))
    for name, spec in protocol.fields.items():
        out.extend(_field_ranges(spec.width_mm, spec.height_mm, spec.centre_mm, name))
    for i, step in enumerate(protocol.steps):
        where: Loc = (*root, "steps", i)
        if isinstance(step, CaptureStep | TomoStep):
            tech = (
                default
                if step.technique is None
                else technique(step.technique, (*where, "technique"))
            )
            if isinstance(step, TomoStep) and tech is not None:
                try:
                    TomoRequest(
                        tuple(step.layer_heights_mm), tech, step.sweep_deg, step.projections
                    )
                except ValueError as exc:
                    name, message = _driver_refusal(exc)
                    name = "layer_heights_mm" if name in ("layer_height_mm", "") else name
                    out.append(_error((*where, name), message))
        elif isinstance(step, FluoroStep):
            try:
                fluoro = fluoro_technique_for(step.technique)
            except ValueError as exc:
                name, message = _driver_refusal(exc)
                name = "pulse_ms" if name == "exposure_ms" else name
                out.append(_error((*where, "technique", name) if name else where, message))
            else:
                try:
                    FluoroRequest(step.pulse_rate_hz, step.duration_s, fluoro)
                except ValueError as exc:
                    name, message = _driver_refusal(exc)
                    out.append(_error((*where, name) if name else where, message))
        elif isinstance(step, InjectStep):
            out.extend(_program_ranges(protocol, step, where))
        if isinstance(step, CaptureStep | FluoroStep | TomoStep) and step.view.angulation:
            try:
                PositionerPose(
                    secondary_angle_deg=step.view.angulation.secondary_angle_deg, sid_mm=SID_MM
                )
            except ValueError as exc:
                loc = (*where, "view", "angulation", "angle_deg")
                out.append(_error(loc, _driver_refusal(exc)[1]))
    return out


def _field_ranges(width: float, height: float, centre: float, name: str) -> list[Finding]:
    loc: Loc = ("protocol", "fields", name)
    out: list[Finding] = []
    for build in (
        lambda: CollimationField(width, height),
        lambda: TablePosition(longitudinal_mm=centre),
    ):
        try:
            build()
        except ValueError as exc:
            driver, message = _driver_refusal(exc)
            attr = {"longitudinal_mm": "centre_mm"}.get(driver, driver)
            out.append(_error((*loc, attr) if attr else loc, message))
    return out


def _program_ranges(protocol: Protocol, step: InjectStep, where: Loc) -> list[Finding]:
    out: list[Finding] = []
    for j, phase in enumerate(step.phases):
        try:
            InjectionPhase(phase.flow_ml_s, phase.volume_ml, phase.delay_s)
        except ValueError as exc:
            name, message = _driver_refusal(exc)
            out.append(_error((*where, "phases", j, name) if name else where, message))
    if out or protocol.contrast is None:
        return out
    try:
        injection_program_for(step, protocol.contrast)
    except ValueError as exc:
        name, message = _driver_refusal(exc)
        loc: Loc = {
            "pressure_limit_kpa": (*where, _pressure_key(step)),
            "rise_time_s": (*where, "rise_time_s"),
            "concentration_mg_ml": ("protocol", "contrast", "concentration_mg_ml"),
        }.get(name, where)
        out.append(_error(loc, message))
    return out


def _pressure_key(step: InjectStep) -> str:
    return "pressure_limit_kpa" if step.pressure_limit_kpa is not None else "pressure_limit_psi"


def _injection_limits(protocol: Protocol, room: Room) -> list[Finding]:
    """The room's injector envelope, checked here as the engine checks it before arming."""
    for i, step in enumerate(protocol.steps):
        if not isinstance(step, InjectStep) or protocol.contrast is None:
            continue
        try:
            program = injection_program_for(step, protocol.contrast)
        except ValueError:
            return []  # already a driver-range finding
        try:
            check_injection_program(program, room.limits)
        except InterlockRefused as exc:
            where: Loc = ("protocol", "steps", i)
            limits = room.limits
            if program.max_flow_ml_s > limits.max_flow_ml_s:
                j = max(range(len(step.phases)), key=lambda k: step.phases[k].flow_ml_s)
                loc: Loc = (*where, "phases", j, "flow_ml_s")
            elif program.volume_ml > limits.max_volume_ml:
                loc = (*where, "phases")
            else:
                loc = (*where, _pressure_key(step))
            return [_error(loc, f"{exc.reason} (the room's injector limits)")]
    return []


def _dose(protocol: Protocol, room: Room) -> list[Finding]:
    """Fluoroscopy time and air-kerma rate as the engine's dose monitor will judge them
    (errors: it would refuse the run), and the estimated reference air kerma against the
    room's stop level (a warning: the estimate is from tube output, the stop uses measured
    values)."""
    out: list[Finding] = []
    monitor = DoseMonitor(room.dose)
    for i, step in enumerate(protocol.steps):
        if not isinstance(step, FluoroStep):
            continue
        t = step.technique
        try:
            monitor.check_fluoro(step.duration_s, t.kv, t.ma, t.pulse_ms, step.pulse_rate_hz)
        except InterlockRefused as exc:
            rate = monitor.estimated_rate_mgy_min(t.kv, t.ma, t.pulse_ms, step.pulse_rate_hz)
            over_rate = rate > room.dose.max_air_kerma_rate_mgy_min
            loc: Loc = ("protocol", "steps", i, "technique" if over_rate else "duration_s")
            out.append(_error(loc, f"the room's dose limits would refuse this run: {exc.reason}"))
        # book the planned run as the engine books what it delivered: its duration (fluoroscopy
        # time as 21 CFR 1020.30(b) counts it), not the sum of its pulse widths
        monitor.add(0.0, fluoro_s=step.duration_s)
    cap = room.dose.max_reference_air_kerma_mgy
    if cap is not None:
        plan = estimate_timeline(protocol, room)
        total = 0.0
        for i, planned in enumerate(plan.steps):
            if planned.exposures and total >= cap:
                out.append(
                    _warning(
                        ("protocol", "steps", i),
                        f"the estimated air kerma before this step, {total:.1f} mGy, has "
                        f"reached the room's stop level {cap:g} mGy: the exposure would "
                        "probably be refused (estimate from tube output; measured values decide)",
                    )
                )
                break
            total += planned.entrance_mgy
    return out


def _timeline(protocol: Protocol, room: Room) -> list[Finding]:
    """A timed acquisition that the estimated timeline cannot reach within its tolerance.

    The engine prepares a view (repositioning, table move, collimation, technique) only
    after the step before it has ended, and a film right after the injection only once the
    injector has confirmed the start; preparation takes seconds. The estimate uses the
    room's scripted operator delays, so this is a warning, not an error.
    """
    out: list[Finding] = []
    plan = estimate_timeline(protocol, room)
    steps = protocol.steps
    for i, (step, planned) in enumerate(zip(steps, plan.steps, strict=True)):
        if not isinstance(step, CaptureStep | FluoroStep | TomoStep) or step.at is None:
            continue
        if planned.after_injection_s is None:
            continue
        late = planned.after_injection_s - step.at
        if late <= step.tolerance_s + 1e-9:
            continue
        before = steps[i - 1]
        if isinstance(before, InjectStep):
            why = (
                f"due {step.at:g} s after the injection start, but its view is prepared only "
                "after the injector confirms the start, which with the preparation takes "
                f"about {planned.after_injection_s:.0f} s"
            )
        else:
            why = (
                f"due {step.at:g} s after the injection start, but step {before.id!r} before "
                f"it and preparing the view end about {planned.after_injection_s:.0f} s after it"
            )
        out.append(
            _warning(
                ("protocol", "steps", i, "at"),
                f"{why}: about {late:.0f} s late (tolerance {step.tolerance_s:g} s), so it "
                "would be recorded missed",
            )
        )
    return out


# -- reporting -------------------------------------------------------------------------------
def describe(finding: Finding, path: Path | str, line: int | None = None) -> str:
    """``file:line: field: message`` for a finding about the file at ``path``."""
    if line is None:
        line = _lines(path, [finding])[0]
    return str(ConfigError(path, line, finding.field, finding.message))


def _lines(path: Path | str, findings: list[Finding]) -> list[int | None]:
    try:
        _data, node = load_yaml(Path(path))
    except ConfigError:
        return [None] * len(findings)
    return [line_of(node, parse_loc(f.field))[0] for f in findings]


def raise_on_errors(findings: Iterable[Finding], protocol_path: Path) -> None:
    """Raise a :class:`ConfigError` for the first error, naming the file (``protocol_path``,
    or whichever file the findings are about), the line of its field and the field."""
    errors = [f for f in findings if f.severity == "error"]
    if not errors:
        return
    first = errors[0]
    message = first.message
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    line = _lines(protocol_path, [first])[0]
    raise ConfigError(protocol_path, line, first.field, message)


def warnings_of(findings: Iterable[Finding], path: Path | str) -> list[str]:
    """One ``warning: file:line: field: message`` line per warning."""
    warns = [f for f in findings if f.severity == "warning"]
    return [
        f"warning: {describe(f, path, line)}"
        for f, line in zip(warns, _lines(path, warns), strict=True)
    ]


__all__ = [
    "Finding",
    "describe",
    "fluoro_technique_for",
    "injection_program_for",
    "preflight",
    "raise_on_errors",
    "technique_for",
    "warnings_of",
]
