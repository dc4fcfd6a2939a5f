"""Reactions to device faults and lost links, as the room's fault policy says (docs/faults.md).

Faults a device *reports* (the injector's over-pressure, occlusion, ...) arrive as device
events and may end the exam at once (:func:`end_exam` stops the steps; the runner aborts
into the safe state). Faults a *command* meets (a generator fault, a table stall, a link
that died) are handled where the command was sent and recorded here.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from drivers import DeviceError, DeviceEvent, DeviceFault, DeviceLost, DeviceTimeout

from ..safety import ABORT_STEP_TIMEOUT_S
from ..state import RunState
from .context import ExamContext
from .events import DeviceLostEvent, FaultNoted, InjectionStopConfirmed, UncommandedInjection
from .results import ExamFaulted, StepResult


def note_fault(ctx: ExamContext, role: str, fault: str, reaction: str) -> None:
    ctx.detected_s = ctx.clock.now()
    ctx.faults.append(f"{role}.{fault}")
    ctx.health[role] = f"faulted: {fault}"
    ctx.emit(FaultNoted(step=ctx.current_step, device=role, fault=fault, reaction=reaction))


def end_exam(ctx: ExamContext, state: RunState, reason: str) -> None:
    """From an event handler: stop the steps now; the runner aborts into the safe state."""
    if ctx.end is not None:
        return
    ctx.detected_s = ctx.clock.now()
    ctx.end = (state, reason)
    if ctx.steps_task is not None and not ctx.steps_task.done():
        ctx.steps_task.cancel()


def on_injector_event(ctx: ExamContext, event: DeviceEvent) -> None:
    """Track the contrast delivered; react to a fault the injector reports and to contrast
    the scheduler did not command."""
    delivered = event.data.get("delivered_ml")
    if isinstance(delivered, int | float):
        ctx.contrast_ml = float(delivered)
    evidence = ctx.contrast.observe_event(event.kind, event.data)
    if evidence is not None:
        uncommanded_injection(ctx, evidence)
    if event.kind in ("faulted", "fault_reported"):
        faults = event.data.get("faults") or [event.data.get("fault")]
        for fault in faults:
            if fault:  # an event that names no fault (an empty list) is no fault
                _injector_fault(ctx, str(fault))


def _injector_fault(ctx: ExamContext, fault: str) -> None:
    """An injector fault reported by the device (it has halted its flow itself)."""
    if ctx.anchor is None:
        note_fault(ctx, "injector", fault, "before the injection started")
        return  # the inject step sees the faulted injector and ends the exam
    decision = ctx.policy.injector.get(fault, "abort")
    note_fault(
        ctx,
        "injector",
        fault,
        "injection stopped; imaging continues"
        if decision == "continue"
        else "injection stopped; exam ends",
    )
    ctx.spawn(_confirm_injector_stopped(ctx))
    if decision == "abort":
        end_exam(ctx, RunState.FAULTED, f"injector fault {fault} (policy: abort)")


UNCOMMANDED = "uncommanded_injection"


def uncommanded_injection(ctx: ExamContext, evidence: str, *, stop: bool = True) -> None:
    """The injector delivered contrast the scheduler did not command: journal it (a
    ``safety`` line), alert the operator (the progress display shows it), stop the injector
    and end the exam as ``faults.injector.uncommanded_injection`` says (default: abort; before
    the scheduler's own start the exam always ends: its films would have no true anchor).

    ``stop=False`` from the abort itself, which has already stopped every device.
    """
    ledger = ctx.contrast
    decision = ctx.policy.injector.get(UNCOMMANDED, "abort")
    if ctx.anchor is None:
        decision = "abort"
    ctx.emit(
        UncommandedInjection(
            step=ctx.current_step,
            evidence=evidence,
            device_ml=None if ledger.device_ml is None else round(ledger.device_ml, 3),
            device_starts=ledger.device_starts,
            commanded_ml=round(ledger.commanded_ml, 3),
            commanded_starts=ledger.commanded_starts,
            decision=decision,
        )
    )
    note_fault(
        ctx,
        "injector",
        UNCOMMANDED,
        "injector stopped; imaging continues" if decision == "continue" else "exam ends",
    )
    if stop:
        ctx.spawn(_confirm_injector_stopped(ctx))
    if decision == "abort":
        end_exam(ctx, RunState.FAULTED, f"uncommanded injection: {evidence} (policy: abort)")


async def reconcile_contrast(ctx: ExamContext) -> None:
    """At the end of the steps: ask the injector once more what it delivered, so an
    injection made after its last event (or whose events were lost) still shows."""
    if ctx.contrast.evidence is not None:
        return
    try:
        status = await ctx.devices.injector.status()
    except DeviceError:
        return  # its last report stands
    evidence = ctx.contrast.observe_status(status)
    if evidence is not None:
        uncommanded_injection(ctx, evidence)


async def _confirm_injector_stopped(ctx: ExamContext) -> None:
    try:
        await ctx.devices.injector.stop()
        confirmed = "stopped"
    except DeviceError as exc:
        confirmed = f"unconfirmed: {exc}"
    ctx.emit(InjectionStopConfirmed(result=confirmed))


def injector_fault_before_start(ctx: ExamContext, exc: DeviceFault, result: StepResult) -> NoReturn:
    note_fault(ctx, "injector", exc.fault, "before the injection started: exam ends")
    result.status, result.detail = "failed", str(exc)
    raise ExamFaulted(
        f"injector fault before the injection started ({exc.fault}): timed films need a "
        "confirmed start"
    )


async def device_lost(
    ctx: ExamContext, exc: DeviceLost | DeviceTimeout, result: StepResult
) -> None:
    """A device stopped answering: its safe state, then the policy's decision."""
    ctx.detected_s = ctx.clock.now()
    role = ctx.role_of(exc.device)
    ctx.health[role] = f"lost: {exc.detail}"
    ctx.faults.append(f"{role}.link_lost")
    device = getattr(ctx.devices, role, None)
    safe = "n/a"
    if device is not None:
        try:
            async with asyncio.timeout(ABORT_STEP_TIMEOUT_S * 1.1):
                await device.safe_state(timeout_s=ABORT_STEP_TIMEOUT_S)
            safe = "safe"
        except (TimeoutError, DeviceError) as err:
            safe = f"unconfirmed: {err or 'no answer'}"
    decision = ctx.policy.link_lost.get(role, "abort")
    if role == "injector" and ctx.anchor is None:
        decision = "abort"  # no confirmed start: nothing to anchor the films to
    ctx.emit(
        DeviceLostEvent(
            step=result.id, device=role, error=str(exc), safe_state=safe, decision=decision
        )
    )
    if result.status == "running":
        result.status = "failed"
        result.detail = result.detail or f"{role} lost: {exc}"
    if decision == "abort":
        raise ExamFaulted(f"{role} lost ({exc}); policy: abort")


async def safe_carm_status(ctx: ExamContext) -> str:
    """The C-arm's beam and readiness in words, or why they cannot be read."""
    try:
        s = await ctx.devices.carm.status()
        return f"beam_on={s.beam_on} ready={s.ready}"
    except DeviceError as exc:
        return f"unavailable ({exc})"
