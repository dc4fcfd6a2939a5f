"""Before the first command: room on disk, no device left in a previous exam's state, and
the injector's counters taken as the baseline of this exam's contrast."""

from __future__ import annotations

from drivers import DeviceError, InjectorState, InjectorStatus

from ..protocol import InjectStep
from ..storage import check_space, exam_bytes
from .context import ExamContext
from .events import InjectorReset
from .results import ExamAborted


async def prepare(ctx: ExamContext) -> None:
    if ctx.recovered is None:
        check_space(ctx.out_dir, exam_bytes(ctx.protocol), "this exam's images")
        await reset_injector(ctx)
    await baseline_contrast(ctx)


async def baseline_contrast(ctx: ExamContext) -> None:
    """What the injector has counted before this exam (its current arm excepted), so that
    any injection from here on that the scheduler did not command shows.

    A resumed exam whose journal says the start was sent owns the current arm's injection.
    An injector that cannot be read now is not an error here (the steps meet it): the
    ledger then judges by what the injector reports later.
    """
    # What the journal says was commanded is ours whether or not the injector answers now:
    # an unreadable injector right after a restart must not make our own injection look
    # uncommanded later.
    rec = ctx.recovered
    if rec is not None and rec.injection_commanded and ctx.protocol.contrast is not None:
        for step in ctx.protocol.steps:
            if isinstance(step, InjectStep):
                ctx.contrast.command(sum(p.volume_ml for p in step.phases))
                break
    try:
        status = await ctx.devices.injector.status()
    except DeviceError:
        return
    ctx.contrast.baseline(status)


async def reset_injector(ctx: ExamContext) -> None:
    """An injector still holding an earlier exam's injection is reset here or refused.

    A completed, stopped or faulted program is cleared with ``disarm`` (a new program for a
    new patient); an injector that is still injecting is never touched — the exam is
    refused, before anything is exposed.
    """
    injector = ctx.devices.injector
    status = await injector.status()
    if _clean(status):
        return
    if status.state in (InjectorState.INJECTING, InjectorState.HOLDING):
        raise ExamAborted(
            f"the injector is {status.state.value} ({status.delivered_ml:.1f} mL delivered) "
            "before this exam began: refused; finish or stop that injection at the injector"
        )
    await injector.disarm()
    after = await injector.status()
    ctx.emit(
        InjectorReset(
            found_state=status.state.value,
            found_delivered_ml=round(status.delivered_ml, 3),
            state=after.state.value,
        )
    )
    if not _clean(after):
        raise ExamAborted(
            f"the injector still reports an earlier injection after a reset (state "
            f"{after.state.value}, {after.delivered_ml:.1f} mL, started "
            f"{after.started_at_s}): refused before any exposure"
        )


def _clean(status: InjectorStatus) -> bool:
    """Idle with nothing delivered and no start: ready for this exam's own program."""
    return (
        status.state is InjectorState.IDLE
        and status.started_at_s is None
        and status.delivered_ml <= 1e-6
    )
