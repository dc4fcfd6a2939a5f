"""A step's time point, and waiting for it (announced to displays)."""

from __future__ import annotations

from ...operator import SkipStep
from ..context import ExamContext
from ..events import Waiting, WaitOver
from ..results import ExamAborted, StepResult
from ..timing import NoAnchor, time_point


def due(ctx: ExamContext, at_s: float | None, result: StepResult) -> float | None:
    """The step's time point (recorded as planned), or None for an untimed step."""
    if at_s is None:
        return None
    try:
        deadline = time_point(ctx.anchor, at_s)
    except NoAnchor as exc:
        raise ExamAborted(f"step {result.id}: {exc}") from None
    result.planned_after_injection_s, result.planned_s = at_s, deadline
    return deadline


async def wait_for(
    ctx: ExamContext, deadline_s: float | None, label: str, *, wake_s: float | None = None
) -> None:
    """Sleep until ``deadline_s`` (an absolute loop time), or until ``wake_s`` when given (an
    acquisition wakes its command lead before the time point it announces); nothing to wait
    for when ``deadline_s`` is None.

    The wait is where operator actions fit: a skip of this step ends it here
    (:class:`~scheduler.operator.SkipStep`), and films the operator asked for are taken
    while there is time enough before the wake (they never move it).
    """
    # imported here: the films are acquisitions, and acquisitions wait with this function
    from .operator_films import take_films

    if deadline_s is None:
        return
    until_s = deadline_s if wake_s is None else min(wake_s, deadline_s)
    ctx.next_deadline_s, ctx.next_step = deadline_s, label
    step = ctx.current_step
    ctx.emit(Waiting(step=step, label=label, deadline_s=deadline_s))
    try:
        while True:
            skip = ctx.requests.take_skip(step) if step is not None else None
            if skip is not None:
                raise SkipStep(skip)
            await take_films(ctx, before_s=until_s)
            if not await ctx.requests.wait(ctx.clock, until_s):
                break
    finally:
        ctx.next_deadline_s, ctx.next_step = None, ""
    ctx.emit(WaitOver(step=step))
