"""The abort: every device to its safe state, and nothing that arrives meanwhile cuts it short.

The sequence (injector stop → beam off → table stop, each bounded in wall time at any time
scale) runs in a task of its own, awaited through ``asyncio.shield``: a second Ctrl-C,
SIGTERM or ``task.cancel()`` is journaled (``abort_interrupt_ignored``) and the wait goes
on, so no device is ever skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from drivers import DeviceError

from ..safety import ABORT_STEP_TIMEOUT_S, abort_all, abort_step_bound_s
from .context import ExamContext
from .events import Aborted, AbortInterruptIgnored
from .faults import uncommanded_injection


async def abort(ctx: ExamContext, reason: str) -> tuple[dict[str, str], bool]:
    """Returns each device's confirmation and whether an interruption arrived meanwhile
    (the caller re-raises it once the record is closed)."""
    if ctx.monitor is not None:
        ctx.monitor.cancel()
    for task in list(ctx.side_tasks):
        task.cancel()
    job = asyncio.create_task(_abort_devices(ctx, reason))
    interrupted = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            if job.cancelled():  # pragma: no cover - nobody else holds the task
                break
            interrupted = True
            with contextlib.suppress(OSError):
                ctx.emit(AbortInterruptIgnored())
    confirmed = job.result() if not job.cancelled() else {}
    return confirmed, interrupted


async def _abort_devices(ctx: ExamContext, reason: str) -> dict[str, str]:
    wall0 = time.perf_counter()
    report = await abort_all(ctx.devices, time_scale=ctx.clock.time_scale)
    await _final_injector_report(ctx)
    since = None if ctx.detected_s is None else ctx.clock.now() - ctx.detected_s
    with contextlib.suppress(OSError):  # a full disk must not cut the abort short
        ctx.emit(
            Aborted(
                reason=reason,
                confirmed=report.confirmed,
                duration_s=round(report.duration_s, 6),
                wall_duration_s=round(time.perf_counter() - wall0, 6),
                since_detection_s=None if since is None else round(since, 6),
                contrast_delivered_ml=round(ctx.delivered_ml(), 3),
            )
        )
    for r in ctx.results:
        if r.status in ("pending", "running"):
            r.status = "skipped" if r.status == "pending" else "failed"
            r.detail = r.detail or f"exam ended: {reason}"
    return report.confirmed


async def _final_injector_report(ctx: ExamContext) -> None:
    """The injector's own account of what it delivered, after it was stopped (and of
    contrast the scheduler never commanded, which the record then says)."""
    if ctx.anchor is None and ctx.contrast_ml <= 0 and ctx.contrast.evidence is None:
        return  # nothing was started: nothing to account for
    scale = ctx.clock.time_scale
    bound = abort_step_bound_s(ctx.devices.injector, scale)
    try:
        async with asyncio.timeout(bound * scale * 1.1):
            ctx.injector_status = await ctx.devices.injector.status(
                timeout_s=ABORT_STEP_TIMEOUT_S * scale
            )
    except (TimeoutError, DeviceError):
        return  # its last report stands
    evidence = ctx.contrast.observe_status(ctx.injector_status)
    if evidence is not None:
        with contextlib.suppress(OSError):  # a full disk must not cut the abort short
            uncommanded_injection(ctx, evidence, stop=False)
