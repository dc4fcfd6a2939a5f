"""Before the first command: room on disk, and no device left in a previous exam's state."""

from __future__ import annotations

from drivers import InjectorState, InjectorStatus

from ..storage import check_space, exam_bytes
from .context import ExamContext
from .events import InjectorReset
from .results import ExamAborted


async def prepare(ctx: ExamContext) -> None:
    if ctx.recovered is None:
        check_space(ctx.out_dir, exam_bytes(ctx.protocol), "this exam's images")
        await reset_injector(ctx)


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
