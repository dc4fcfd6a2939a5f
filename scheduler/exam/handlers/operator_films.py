"""Operator actions on a running exam: skip a step, repeat a film, take an extra film.

Requests are checked when made (:func:`refusal`) and carried out at safe moments:

* a **skip** ends its step at the step's start, while it waits for its time point or while
  its prompt waits for an answer — never once anything fire-once of it was sent (a skip
  arriving later is refused, journaled). The injection cannot be skipped: every timed film
  is anchored to it (decline its prompt or abort instead).
* a **repeat** exposes a radiograph again at that step's view; an **extra** film exposes one
  at the view the room is at. Each is a new exposure: journaled (``command``, ``capture``,
  ``operator_film``), checked by the safety kernel and the dose monitor, its dose counted,
  its image stored beside the first (which is kept). Films are taken between steps, or
  while a step waits for its time point with at least :data:`FILM_MARGIN_S` to spare (the
  waiting step's view is set again afterwards): an operator film never moves a time point.
  None is taken while the injection's outcome is ambiguous (a start sent and not
  confirmed, or an injector whose state is unknown during the injection).
"""

from __future__ import annotations

from typing import Any

from ...operator import Request
from ...protocol import CaptureStep, ViewSpec
from ..context import ExamContext
from ..events import OperatorFilm, OperatorRequested, OperatorRequestRefused, StepSkipped
from ..images import record_capture
from ..results import FINAL_STATUSES, StepResult
from . import capture
from .acquisition import fire
from .view import prepare_view

#: time an operator film needs before a time point (table travel, settle, exposure, store)
FILM_MARGIN_S = 30.0


def accept(ctx: ExamContext, request: Request, *, active: bool) -> str | None:
    """Queue ``request`` (journaled ``operator_request``) and return None, or journal why it
    is refused (``operator_request_refused``) and return that; ``active``: the exam runs."""
    why = refusal(ctx, request) if active else "the exam is not running"
    if why is not None:
        refused(ctx, request, why)
        return why
    ctx.emit(
        OperatorRequested(
            step=request.step,
            action=request.action,
            reason=request.reason,
            origin=request.source,
            who=request.who,
        )
    )
    ctx.requests.add(request)
    return None


def refusal(ctx: ExamContext, request: Request) -> str | None:
    """Why ``request`` cannot be accepted now; None when it can."""
    steps = {s.id: s for s in ctx.protocol.steps}
    results = {r.id: r for r in ctx.results}
    if all(r.status in FINAL_STATUSES for r in ctx.results):
        return "the exam's steps are over"
    if request.action == "skip":
        if request.step not in steps:
            return f"no step {request.step!r} in this protocol"
        if steps[request.step].type == "inject":
            return "the injection cannot be skipped (the timed films are anchored to it)"
        status = results[request.step].status
        if status in FINAL_STATUSES:
            return f"step {request.step} is already {status}"
        return None
    ambiguous = injection_ambiguity(ctx)
    if ambiguous is not None:
        return f"no film while {ambiguous}"
    if request.action == "repeat":
        if request.step not in steps:
            return f"no step {request.step!r} in this protocol"
        step = steps[request.step]
        if not isinstance(step, CaptureStep):
            return f"step {request.step} is a {step.type} step; only radiographs are repeated"
        if not results[request.step].files:
            return f"step {request.step} has no film to repeat"
        position = step.view.position or _taken_in(ctx, request.step)
        if position is not None and position != ctx.position:
            return f"the patient is {ctx.position} now; {request.step} was taken {position}"
        return None
    if ctx.view_step is None:
        return "the room has no view yet"
    return None


def injection_ambiguity(ctx: ExamContext) -> str | None:
    """What is unknown about the injection now, or None."""
    if ctx.contrast.commanded_ml > 0 and ctx.anchor is None:
        return "the injection start was sent and is not confirmed"
    injector = ctx.health.get("injector", "ok")
    running = ctx.monitor is not None and not ctx.monitor.done()
    if injector != "ok" and (running or (ctx.injector_status is None and ctx.anchor is not None)):
        return f"the injector's state is unknown ({injector})"
    return None


async def take_films(ctx: ExamContext, before_s: float | None) -> None:
    """Take the queued operator films that fit before ``before_s`` (None: no time point)."""
    while ctx.requests.films:
        if before_s is not None and before_s - ctx.clock.now() < FILM_MARGIN_S:
            return  # kept for the next moment with time enough
        request = ctx.requests.take_film()
        await ctx.gate.wait()
        why = refusal(ctx, request)
        if why is not None:
            refused(ctx, request, why)
            continue
        await _take(ctx, request)
        if ctx.prepared is not None:  # the waiting step's view, set again
            await prepare_view(ctx, *ctx.prepared)


async def _take(ctx: ExamContext, request: Request) -> None:
    base: Any = (
        next(s for s in ctx.protocol.steps if s.id == request.step)
        if request.action == "repeat"
        else ctx.view_step
    )
    count = sum(1 for r in ctx.records if r.step_id == base.id)
    label = (
        f"{base.title} (repeat {count})"
        if request.action == "repeat"
        else f"Extra film ({base.title} view)"
    )
    film = CaptureStep(
        type="capture",
        id=base.id,
        label=label,
        view=ViewSpec(field=base.view.field, angulation=base.view.angulation),
        technique=base.technique if isinstance(base, CaptureStep) else None,
    )
    result = StepResult(base.id, label, "capture")
    technique = capture.KIND.technique(ctx, film)
    await prepare_view(ctx, film, technique)
    ctx.view_step = base
    acquired = await fire(capture.KIND, ctx, film, result, None, 0.0)
    for frames, pulse_rate, tomo in acquired or []:
        await record_capture(ctx, film, result, frames, pulse_rate, tomo)
    status = "done" if result.files else (result.status if acquired is None else "failed")
    ctx.emit(
        OperatorFilm(
            step=base.id,
            action=request.action,
            status=status,
            detail=result.detail,
            files=tuple(result.files),
            reason=request.reason,
            origin=request.source,
            who=request.who,
        )
    )


def skipped(ctx: ExamContext, result: StepResult, request: Request, by: str) -> None:
    """Record ``result``'s step as skipped by ``request``."""
    result.status = "skipped"
    result.detail = (
        request.reason
        if by == "decline"
        else f"skipped by the operator ({request.source}): {request.reason}"
    )
    ctx.emit(
        StepSkipped(
            step=result.id,
            reason=request.reason,
            by=by,
            origin=request.source,
            who=request.who,
        )
    )


def refused(ctx: ExamContext, request: Request, why: str) -> None:
    ctx.emit(
        OperatorRequestRefused(
            step=request.step,
            action=request.action,
            reason=why,
            origin=request.source,
            who=request.who,
        )
    )


def _taken_in(ctx: ExamContext, step_id: str) -> str | None:
    for record in reversed(ctx.records):
        if record.step_id == step_id:
            return record.patient_position
    return None
