"""Step handlers, chosen by step kind from one table.

A handler is ``async def handle(ctx, step, result)``: it carries out one protocol step on
the room, records what happened in ``result`` and emits its events. A new step kind is a
new module here and one entry in :data:`HANDLERS`; the runner does not change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from ...operator import SkipStep
from ..context import ExamContext
from ..results import StepResult
from . import capture, fluoro, inject, operator_films, prompt, tomo

StepHandler = Callable[[ExamContext, object, StepResult], Awaitable[None]]

HANDLERS: Mapping[str, StepHandler] = MappingProxyType(
    {
        "capture": capture.handle,
        "fluoro": fluoro.handle,
        "tomo": tomo.handle,
        "inject": inject.handle,
        "prompt": prompt.handle,
    }
)


def handler_for(step_type: str) -> StepHandler:
    """The handler of ``step_type``, with the operator's actions around it (a skip asked for
    the step, films queued before it; see :mod:`.operator_films`)."""
    try:
        handler = HANDLERS[step_type]
    except KeyError:  # pragma: no cover - the protocol model admits no other step
        raise TypeError(f"no handler for steps of type {step_type!r}") from None

    async def with_operator_actions(ctx: ExamContext, step: object, result: StepResult) -> None:
        sid: str = getattr(step, "id")  # noqa: B009 - every step model has an id
        try:
            request = ctx.requests.take_skip(sid)
            if request is not None:
                raise SkipStep(request)
            await operator_films.take_films(ctx, before_s=None)
            await handler(ctx, step, result)
        except SkipStep as exc:
            operator_films.skipped(ctx, result, exc.request, exc.by)
        late = ctx.requests.take_skip(sid)
        if late is not None:
            operator_films.refused(ctx, late, f"step {sid} was already under way ({result.status})")
        if ctx.protocol.steps[-1] is step:  # the films asked for during the last step
            await operator_films.take_films(ctx, before_s=None)

    return with_operator_actions


__all__ = ["HANDLERS", "StepHandler", "handler_for"]
