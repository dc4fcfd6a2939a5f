"""Prompt steps, and asking the operator anything (repositioning, the injection start).

A declined prompt follows its step's ``on_decline``: ``skip`` ends the step as skipped and
the exam goes on, ``abort`` ends the exam, ``ask`` asks the operator which. Unset, a declined
repositioning aborts (the films after it assume the new position) and any other declined
prompt skips its step. Every answer is journaled with where it came from.
"""

from __future__ import annotations

from typing import Any

from ...operator import Answer, Prompt, Request, SkipStep, answer_of
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
        await reposition(ctx, step, step.position)
    else:
        answer = await ask_answer(ctx, Prompt(step.id, step.action, step.message))
        if not answer.confirmed:
            await declined(ctx, step, answer, default="skip", what="declined")
    result.device_s = ctx.clock.now()  # the operator's answer: when it was done
    result.status = "done"


async def ask(ctx: ExamContext, prompt: Prompt) -> bool:
    """Ask the operator; True when confirmed (see :func:`ask_answer`)."""
    return (await ask_answer(ctx, prompt)).confirmed


async def ask_answer(ctx: ExamContext, prompt: Prompt) -> Answer:
    """Ask the operator; a confirmed action is applied to a simulated patient.

    A skip of the prompt's step requested meanwhile abandons the question
    (:class:`~scheduler.operator.SkipStep`); a closed input aborts the exam.
    """
    ctx.emit(
        Prompted(
            step=prompt.step,
            action=prompt.action,
            message=prompt.message,
            position=prompt.position,
        )
    )
    try:
        raw = await ctx.requests.unless_skipped(prompt.step, ctx.operator.ask(prompt))
    except EOFError as exc:
        raise ExamAborted(f"step {prompt.step}: {exc}") from None
    answer = answer_of(ctx.operator, raw)
    ctx.emit(
        Answered(
            step=prompt.step,
            confirmed=answer.confirmed,
            action=prompt.action,
            position=prompt.position,
            origin=answer.source,
            who=answer.who,
        )
    )
    if (
        answer.confirmed
        and ctx.devices.effects is not None
        and prompt.action not in ("confirm_injection", "on_decline")
    ):
        await ctx.devices.effects.apply(prompt.action, prompt.position)
    return answer


async def declined(ctx: ExamContext, step: Any, answer: Answer, *, default: str, what: str) -> None:
    """The operator declined ``step``'s prompt: skip the step or abort, as the step says.

    Always raises: :class:`SkipStep` or :class:`ExamAborted` (with ``what`` in its reason).
    """
    rule = step.on_decline or default
    if rule == "ask":
        answer = await ask_answer(
            ctx,
            Prompt(
                step.id,
                "on_decline",
                f"{step.title}: {what}. Skip this step and go on with the exam, or abort the exam?",
            ),
        )
        rule = "skip" if answer.confirmed else "abort"
    if rule == "skip":
        request = Request("skip", step.id, f"operator {what}", answer.source, answer.who)
        raise SkipStep(request, by="decline")
    raise ExamAborted(f"step {step.id}: the operator {what}")


async def reposition(ctx: ExamContext, step: Any, position: str) -> None:
    """Have the patient turned; no exposure is allowed while they are being turned."""
    ctx.repositioning = True
    try:
        answer = await ask_answer(
            ctx,
            Prompt(
                step.id,
                "reposition",
                f"Turn the patient {_position_phrase(position)}, then confirm.",
                position,
            ),
        )
        if not answer.confirmed:
            await declined(
                ctx, step, answer, default="abort", what="declined to reposition the patient"
            )
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
