"""Step handlers, chosen by step kind from one table.

A handler is ``async def handle(ctx, step, result)``: it carries out one protocol step on
the room, records what happened in ``result`` and emits its events. A new step kind is a
new module here and one entry in :data:`HANDLERS`; the runner does not change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from ..context import ExamContext
from ..results import StepResult
from . import capture, fluoro, inject, prompt, tomo

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
    try:
        return HANDLERS[step_type]
    except KeyError:  # pragma: no cover - the protocol model admits no other step
        raise TypeError(f"no handler for steps of type {step_type!r}") from None


__all__ = ["HANDLERS", "StepHandler", "handler_for"]
