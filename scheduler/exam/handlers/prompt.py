"""Prompt steps, and asking the operator anything (repositioning, the injection start)."""

from __future__ import annotations

from ...operator import Prompt
from ...protocol import PromptStep
from ..context import ExamContext
from ..events import Answered, Prompted
from ..results import ExamAborted, StepResult
from .waits import due, wait_for


async def handle(ctx: ExamContext, step: object, result: StepResult) -> None:
    assert isinstance(step, PromptStep)
    await wait_for(ctx, due(ctx, step.at, result), result.label)
    await ctx.gate.wait()
    result.commanded_s = ctx.clock.now()
    if step.action == "reposition":
        assert step.position is not None
        await reposition(ctx, step.id, step.position)
    elif not await ask(ctx, Prompt(step.id, step.action, step.message)):
        result.status, result.detail = "skipped", "operator declined"
        return
    result.device_s = ctx.clock.now()  # the operator's answer: when it was done
    result.status = "done"


async def ask(ctx: ExamContext, prompt: Prompt) -> bool:
    """Ask the operator; a confirmed action is applied to a simulated patient."""
    ctx.emit(
        Prompted(
            step=prompt.step,
            action=prompt.action,
            message=prompt.message,
            position=prompt.position,
        )
    )
    try:
        answer = await ctx.operator.ask(prompt)
    except EOFError as exc:
        raise ExamAborted(f"step {prompt.step}: {exc}") from None
    ctx.emit(
        Answered(step=prompt.step, confirmed=answer, action=prompt.action, position=prompt.position)
    )
    if answer and ctx.devices.effects is not None and prompt.action != "confirm_injection":
        await ctx.devices.effects.apply(prompt.action, prompt.position)
    return answer


async def reposition(ctx: ExamContext, step_id: str, position: str) -> None:
    """Have the patient turned; no exposure is allowed while they are being turned."""
    ctx.repositioning = True
    try:
        confirmed = await ask(
            ctx,
            Prompt(
                step_id,
                "reposition",
                f"Turn the patient {_position_phrase(position)}, then confirm.",
                position,
            ),
        )
        if not confirmed:
            raise ExamAborted(f"step {step_id}: the operator declined to reposition the patient")
        ctx.position = position
    finally:
        ctx.repositioning = False


def _position_phrase(position: str) -> str:
    return {
        "supine": "supine (on the back)",
        "prone": "prone (face down)",
        "lpo": "into the left posterior oblique (left side down, 30°)",
        "rpo": "into the right posterior oblique (right side down, 30°)",
    }.get(position, position)
