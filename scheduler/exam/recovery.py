"""Taking over what a crashed run left (scheduler/recovery.py reads it from the folder).

Never replays a fire-once action: an injection whose start was sent is adopted if the
injector reports it began; an acquisition in flight is recovered from the detector's memory
if the room kept one, recorded failed if the beam fired and the image is gone, and taken
(a first exposure) only when neither the journal nor the C-arm shows it fired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers import InjectorState

from ..protocol import FluoroStep, InjectStep, TomoStep
from ..recovery import RecoveredExam
from ..safety import DoseMonitor, fluoro_run_time_s
from .context import ExamContext
from .events import (
    CaptureFailed,
    CaptureRecovered,
    CommandNotExecuted,
    ExamResumed,
    InjectionAdopted,
    ProgressRestored,
)
from .images import Acquired, Acquisition, record_capture
from .results import ExamFaulted, StepResult

FromDetector = Callable[[str, Any, Any], list[Acquired]]


def adopt(ctx: ExamContext, rec: RecoveredExam) -> None:
    """Take over the finished steps, images and anchor of an interrupted exam."""
    for result in ctx.results:
        r = rec.steps.get(result.id)
        if r is None or r.status == "pending":
            continue
        result.status, result.detail = r.status, r.detail
        result.planned_after_injection_s = r.planned_after_injection_s
        result.planned_s, result.commanded_s, result.device_s = (
            r.planned_s,
            r.commanded_s,
            r.device_s,
        )
        result.files = list(r.files)
    ctx.anchor = rec.injection_start_s
    ctx.position = rec.position
    ctx.instance = rec.instance
    ctx.prior = list(rec.prior)
    ctx.faults = list(rec.faults)
    kerma = sum(p.reference_air_kerma_mgy for p in ctx.prior)
    ctx.dose = DoseMonitor(ctx.room.dose, fluoro_s=_prior_fluoro_s(ctx), rak_mgy=kerma)
    ctx.dap_gy_cm2 = sum(p.dap_gy_cm2 for p in ctx.prior)


def _prior_fluoro_s(ctx: ExamContext) -> float:
    """Fluoroscopy time of the runs made before the restart: the 5-min alerts and the
    room's limit go on counting from there."""
    rates = {s.id: s.pulse_rate_hz for s in ctx.protocol.steps if isinstance(s, FluoroStep)}
    return sum(
        fluoro_run_time_s(p.frames, rates.get(p.step, 0.0)) for p in ctx.prior if p.kind == "fluoro"
    )


def announce_resume(ctx: ExamContext, rec: RecoveredExam) -> None:
    """The ``exam_resumed`` line: what this process found and took over."""
    ctx.resumed_at_s = ctx.clock.now()
    done = tuple(
        r.id
        for r in ctx.results
        if (s := rec.steps.get(r.id)) is not None and s.status != "pending"
    )
    ctx.emit(
        ProgressRestored(
            steps_total=len(ctx.results),
            steps_done=done,
            images=len(ctx.prior),
            reference_air_kerma_mgy=sum(p.reference_air_kerma_mgy for p in ctx.prior),
            injection_start_s=ctx.anchor,
        )
    )
    ctx.emit(
        ExamResumed(
            after_seq=rec.last_seq,
            resumed_at_s=ctx.resumed_at_s,
            injection_start_s=ctx.anchor,
            wall_at_loop0=ctx.clock.wall_at(0.0).isoformat(),
            prior_images=tuple(p.file for p in ctx.prior),
            adopted_from_disk=tuple(p.file for p in ctx.prior if p.recovered_from_disk),
            ignored_files=tuple({"file": i.file, "reason": i.reason} for i in rec.ignored),
            journal_torn_tail=None
            if rec.torn is None
            else {"line": rec.torn.line, "bytes": rec.torn.size, "kept_in": rec.torn.side_file},
        )
    )


async def recover_in_flight(
    ctx: ExamContext, step: Acquisition, result: StepResult, from_detector: FromDetector
) -> bool:
    """After a restart: finish the acquisition that was in flight without ever re-firing.

    Returns True when the step is settled (images adopted or recovered, or recorded failed
    because the beam fired and the image is gone).
    """
    rec = ctx.recovered
    flight = rec.in_flight if rec else None
    if rec is None or flight is None or flight.step != step.id:
        return False
    rec.in_flight = None
    result.files.extend(f for f in flight.files if f not in result.files)
    expected = len(step.layer_heights_mm) if isinstance(step, TomoStep) else 1
    if len(result.files) >= expected:
        result.status = "done"
        result.detail = "image(s) written before the restart"
        return True
    if not flight.commanded or flight.command_t_s is None:
        return False  # nothing was fired: run the step normally
    result.commanded_s = flight.command_t_s
    persistence = ctx.info.persistence
    found = persistence.recover_acquisitions(flight.command_t_s) if persistence else []
    if found:
        kind, payload = found[0]
        have = {f.split("-", 1)[1] for f in result.files if "-" in f}
        for frames, pulse_rate, tomo in from_detector(kind, payload, step):
            sid = step.id if tomo is None else f"{step.id}-{tomo.layer_height_mm:g}mm"
            if f"{sid}.dcm" in have:
                continue
            await record_capture(ctx, step, result, frames, pulse_rate, tomo)
        result.detail = "recovered from the detector's memory after a restart"
        ctx.emit(CaptureRecovered(step=step.id, files=tuple(result.files)))
        return True
    carm = await ctx.devices.carm.status()
    before = flight.kerma_before_mgy
    fired = flight.beam_seen or (
        before is not None and carm.cumulative_reference_air_kerma_mgy > before + 1e-9
    )
    if fired:
        result.status, result.detail = (
            "failed",
            "the acquisition was made before the restart and its image could not be "
            "recovered; not repeated (fire-once)",
        )
        ctx.emit(CaptureFailed(step=step.id, reason=result.detail))
        return True
    ctx.emit(
        CommandNotExecuted(
            step=step.id,
            reason="the journal and the C-arm show no acquisition for the command sent before "
            "the restart; acquiring now is a first exposure, not a replay",
        )
    )
    return False


async def recover_injection(
    ctx: ExamContext, step: InjectStep, result: StepResult
) -> tuple[float, float] | None:
    """After a restart with the start already sent: adopt the injection, never re-send.

    Returns the injector-reported start and the program's nominal length when adopted;
    None when the step is to run (nothing was started).
    """
    rec = ctx.recovered
    if rec is None or rec.in_flight is None or rec.in_flight.step != step.id:
        return None
    flight, rec.in_flight = rec.in_flight, None
    if "start_injection" not in flight.commanded:
        return None
    injector = ctx.devices.injector
    status = await injector.status()
    if status.state is InjectorState.INJECTING and status.started_at_s is None:
        status = await injector.wait_started()
    nominal = sum(p.volume_ml / p.flow_ml_s + p.delay_s for p in step.phases) + 1.0
    if status.started_at_s is not None:
        result.commanded_s = flight.command_t_s
        ctx.emit(InjectionAdopted(step=step.id, started_at_s=status.started_at_s))
        return status.started_at_s, nominal
    if status.delivered_ml > 0 or status.state not in (InjectorState.ARMED, InjectorState.IDLE):
        raise ExamFaulted(
            f"the injector is {status.state.value} with {status.delivered_ml:.1f} mL "
            "delivered but reports no start time; not re-sent (fire-once)"
        )
    ctx.emit(
        CommandNotExecuted(
            step=step.id,
            reason="the start was sent before the restart but the injector reports it never "
            "began (nothing delivered); the operator confirms again before a first start",
        )
    )
    return None
