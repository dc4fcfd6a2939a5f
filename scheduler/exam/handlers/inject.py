"""The injection step: arm, have the operator confirm, start once, anchor on the injector's
reported start, and watch the injection to its end beside the steps that follow."""

from __future__ import annotations

import asyncio

from drivers import DeviceError, DeviceFault, DeviceTimeout, InjectorState

from ...commands import injection_program_for
from ...operator import Prompt
from ...protocol import InjectStep
from ...safety import InterlockRefused, check_injection_program, check_injection_start
from ..context import ExamContext
from ..events import (
    ArmCommanded,
    InjectionCommanded,
    InjectionConfirmed,
    InjectionFinished,
    InjectionOverrun,
    InjectionUnconfirmed,
    InterlockRefusal,
)
from ..faults import injector_fault_before_start, uncommanded_injection
from ..recovery import recover_injection
from ..results import ExamAborted, StepResult
from .prompt import ask


async def handle(ctx: ExamContext, step: object, result: StepResult) -> None:
    assert isinstance(step, InjectStep)
    assert ctx.protocol.contrast is not None
    injector = ctx.devices.injector
    adopted = await recover_injection(ctx, step, result)
    if adopted is not None:
        confirm_injection(ctx, step, result, *adopted)
        return
    program = injection_program_for(step, ctx.protocol.contrast)
    try:
        check_injection_program(program, ctx.room.limits)
    except InterlockRefused as exc:
        ctx.emit(InterlockRefusal(step=step.id, command=exc.command, reason=exc.reason))
        result.status, result.detail = "failed", exc.reason
        raise
    await ctx.gate.wait()
    try:
        if (await injector.status()).state is not InjectorState.ARMED:
            await injector.arm(program)
    except DeviceFault as exc:
        injector_fault_before_start(ctx, exc, result)
    ctx.emit(
        ArmCommanded(
            step=step.id,
            volume_ml=program.volume_ml,
            max_flow_ml_s=program.max_flow_ml_s,
            pressure_limit_kpa=program.pressure_limit_kpa,
        )
    )
    confirmed = True
    if step.confirm:
        confirmed = await ask(
            ctx,
            Prompt(
                step.id,
                "confirm_injection",
                f"Start injection: {program.volume_ml:g} mL {ctx.protocol.contrast.agent} at "
                f"{program.max_flow_ml_s:g} mL/s (limit {program.pressure_limit_kpa:.0f} kPa)?",
            ),
        )
    await ctx.gate.wait()
    status = await injector.status()
    if status.state is InjectorState.FAULTED:
        names = ",".join(f.value for f in status.faults) or "fault"
        injector_fault_before_start(
            ctx, DeviceFault(injector.name, "start", names, "before the start"), result
        )
    try:
        check_injection_start(status, operator_confirmed=confirmed)
    except InterlockRefused as exc:
        ctx.emit(InterlockRefusal(step=step.id, command=exc.command, reason=exc.reason))
        result.status, result.detail = "failed", exc.reason
        await injector.disarm()
        raise
    result.commanded_s = ctx.clock.now()
    ctx.emit(InjectionCommanded(step=step.id))  # on disk before the start is sent
    ctx.contrast.command(program.volume_ml)  # counted before the device can report it
    try:
        await injector.start()
        status = await injector.wait_started()
    except DeviceFault as exc:
        injector_fault_before_start(ctx, exc, result)
    except DeviceTimeout:
        # Fire-once: never re-send start. Ask the device what happened instead.
        status = await injector.status()
        if status.started_at_s is None:
            result.status, result.detail = "failed", "injector did not confirm the start"
            raise ExamAborted("injection start not confirmed by the injector") from None
    assert status.started_at_s is not None
    confirm_injection(ctx, step, result, status.started_at_s, program.nominal_duration_s)


def confirm_injection(
    ctx: ExamContext, step: InjectStep, result: StepResult, started_at_s: float, nominal_s: float
) -> None:
    """The injector reported its start: every time point is anchored to it from now on."""
    ctx.anchor = started_at_s
    result.device_s = started_at_s
    result.status = "done"
    ctx.emit(
        InjectionConfirmed(
            step=step.id,
            started_at_s=started_at_s,
            started_wall=ctx.clock.wall_at(started_at_s).isoformat(),
            commanded_s=result.commanded_s,
        )
    )
    ctx.monitor = asyncio.create_task(watch_injection(ctx, nominal_s * 3 + 30))


async def watch_injection(ctx: ExamContext, timeout_s: float) -> None:
    """Wait for the injector's own end of the injection (stopping one that overruns)."""
    injector = ctx.devices.injector
    try:
        status = await injector.wait_finished(timeout_s=timeout_s)
    except DeviceTimeout as exc:
        ctx.emit(InjectionOverrun(reason=str(exc)))
        try:
            await injector.stop()
            status = await injector.status()
        except DeviceError as err:
            ctx.emit(InjectionUnconfirmed(reason=str(err)))
            return
    except DeviceError as exc:
        ctx.emit(InjectionUnconfirmed(reason=str(exc)))
        return
    ctx.injector_status = status
    evidence = ctx.contrast.observe_status(status)
    if evidence is not None:
        uncommanded_injection(ctx, evidence)
    ctx.emit(
        InjectionFinished(
            state=status.state.value,
            delivered_ml=round(status.delivered_ml, 3),
            faults=tuple(f.value for f in status.faults),
        )
    )
