"""What every acquiring step does (capture, fluoro, tomo): prepare the view, wait for the
time point, check, fire once, store. Each kind says only how it acquires (its own module).

Exposure is fire-once: an acquisition is sent again only when the device says no exposure
was made (a fault code in the policy's ``before_beam_faults``) or, by policy, when the
detector lost a radiograph's frame; an ambiguous outcome (timeout, lost link) is recorded
failed, never re-sent. A refusal beyond the C-arm's own hard limits (fault ``device_limit``,
of the technique or of the irradiation) made no exposure either, but the same request would
be refused again: the step is missed with an ``interlock_refused`` line naming the limit,
and the exam goes on.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from drivers import CArmStatus, DeviceError, DeviceFault, DeviceLost, DeviceTimeout, Technique
from drivers.carm import TRIGGER_PAST, TRIGGER_SYNC
from drivers.errors import LIMIT_FAULT, DeviceLimitExceeded
from drivers.timer import sleep_until_precise

from ...safety import InterlockRefused, check_exposure
from ...storage import MARGIN_BYTES, StorageFull, check_space, frames_of
from ..context import ExamContext
from ..events import (
    AcquisitionCommanded,
    CaptureFailed,
    CaptureMissed,
    CaptureRetake,
    CaptureRetry,
    InterlockRefusal,
)
from ..faults import note_fault, safe_carm_status
from ..images import Acquired, Acquisition, record_capture
from ..recovery import recover_in_flight
from ..results import StepResult
from ..timing import (
    Trigger,
    choose_trigger,
    command_lead_s,
    held_reason,
    late_verdict,
    retry_in_window,
)
from .view import prepare_view
from .waits import due, wait_for


class AcquisitionKind(Protocol):
    """How one kind of acquisition is made; everything else is shared."""

    #: the command the journal names (expose | fluoro | tomo)
    command: str

    def technique(self, ctx: ExamContext, step: Any) -> Technique: ...

    def check_dose(self, ctx: ExamContext, step: Any) -> None:
        """Raise :class:`InterlockRefused` when the dose monitor refuses the acquisition."""
        ...

    async def acquire(self, ctx: ExamContext, step: Any) -> list[Acquired]:
        """Fire the acquisition once; each element becomes one stored image."""
        ...

    def from_detector(self, kind: str, payload: Any, step: Any) -> list[Acquired]:
        """Images from an acquisition the detector kept over a restart."""
        ...

    def after(
        self, ctx: ExamContext, step: Any, result: StepResult, acquired: list[Acquired]
    ) -> None:
        """Anything to record once the images are stored."""
        ...


async def run_acquisition(
    kind: AcquisitionKind, ctx: ExamContext, step: Acquisition, result: StepResult
) -> None:
    deadline = due(ctx, step.at, result)
    if await recover_in_flight(ctx, step, result, kind.from_detector):
        return
    paused = await ctx.gate.wait()
    technique = kind.technique(ctx, step)
    try:
        await prepare_view(ctx, step, technique)
    except DeviceFault as exc:
        if exc.fault != LIMIT_FAULT:
            raise
        refused_by_device(ctx, step, result, exc)
        return
    ctx.prepared = (step, technique)
    latency = await exposure_latency_s(kind, ctx)
    wake = None if deadline is None else deadline - command_lead_s(latency, ctx.clock.time_scale)
    try:
        await wait_for(ctx, deadline, result.label, wake_s=wake)
    finally:
        ctx.prepared = None
    paused += await ctx.gate.wait()
    window = step.late_window_s if step.late_window_s is not None else step.tolerance_s
    if deadline is not None:
        verdict = late_verdict(
            deadline_s=deadline,
            now_s=ctx.clock.now(),
            tolerance_s=step.tolerance_s,
            late_window_s=window,
            when_paused=step.when_paused or ctx.protocol.when_paused,
            held=held_reason(deadline, paused, ctx.resumed_at_s),
        )
        if verdict.action == "miss":
            result.status, result.detail = "missed", verdict.detail
            ctx.emit(CaptureMissed(step=step.id, reason=verdict.detail))
            return
        if verdict.late_window:
            result.detail = verdict.detail
            ctx.taken_late.add(step.id)
    acquired = await fire(kind, ctx, step, result, deadline, window)
    if acquired is None:
        return
    for frames, pulse_rate, tomo in acquired:
        await record_capture(ctx, step, result, frames, pulse_rate, tomo)
    kind.after(ctx, step, result, acquired)


async def fire(
    kind: AcquisitionKind,
    ctx: ExamContext,
    step: Acquisition,
    result: StepResult,
    deadline: float | None,
    window: float,
) -> list[Acquired] | None:
    """The acquisition, re-tried only as the policy allows; None when it ended the step."""
    policy = ctx.policy
    attempts = 0
    timed_refused = False
    while True:
        carm_status = await _check_before_acquisition(kind, ctx, step)
        trigger = await _trigger(kind, ctx, deadline, allow_timed=not timed_refused)
        timed = trigger.due_s if trigger.mode == "timed" else None
        result.trigger, result.command_due_s = trigger.mode, trigger.due_s
        # journaled and fsynced before the command leaves (decision 0007)
        ctx.emit(
            AcquisitionCommanded(
                step=step.id,
                command=kind.command,
                planned_s=result.planned_s,
                kerma_before_mgy=carm_status.cumulative_reference_air_kerma_mgy,
                trigger=trigger.mode,
                command_due_s=trigger.due_s,
                beam_at_s=timed,
            )
        )
        if trigger.send_at_s is not None:
            await sleep_until_precise(ctx.clock, trigger.send_at_s)
        result.sent_s = ctx.clock.now()
        # a timed exposure is commanded for its time point; the others for when they left
        result.commanded_s = result.sent_s if timed is None else timed
        try:
            if timed is not None and isinstance(kind, TimedKind):
                return await kind.acquire_at(ctx, step, timed)
            return await kind.acquire(ctx, step)
        except DeviceLost as exc:
            # Fire-once: the link died with the command in flight; the outcome is unknown.
            result.status, result.detail = "failed", f"outcome unknown ({exc})"
            ctx.emit(CaptureFailed(step=step.id, reason=result.detail))
            raise
        except DeviceTimeout as exc:
            # Fire-once: the beam may or may not have fired. Never re-send; record, go on.
            status = await safe_carm_status(ctx)
            result.status = "failed"
            result.detail = f"outcome unknown ({exc}); C-arm status: {status}"
            ctx.emit(CaptureFailed(step=step.id, reason=result.detail))
            note_fault(ctx, "carm", "ambiguous_acquisition", "recorded failed, not retried")
            return None
        except DeviceFault as exc:
            if exc.fault == LIMIT_FAULT:
                refused_by_device(ctx, step, result, exc)
                return None
            if trigger.mode == "timed" and exc.fault in TIMED_REFUSALS:
                # Not armed, no exposure made: send it the ordinary way, at once.
                timed_refused = True
                note_fault(ctx, "carm", exc.fault, "timed exposure refused; sent untimed")
                ctx.emit(CaptureRetry(step=step.id, fault=exc.fault, attempt=1, reason=str(exc)))
                continue
            attempts += 1
            retry_at = ctx.clock.now() + policy.generator_retry_delay_s
            in_window = retry_in_window(retry_at, deadline, window)
            if exc.fault in policy.before_beam_faults:
                # The device says no exposure was made: taking it again is not a replay.
                note_fault(ctx, "carm", exc.fault, "no exposure made")
                if attempts <= policy.generator_retries and in_window:
                    ctx.emit(
                        CaptureRetry(
                            step=step.id, fault=exc.fault, attempt=attempts, reason=str(exc)
                        )
                    )
                    await ctx.clock.sleep_until(retry_at)
                    continue
                reason = f"{exc} (no exposure made; not retaken: " + (
                    "retries used up)" if in_window else "outside the tolerance window)"
                )
            elif (
                exc.fault == "dropped_frame"
                and policy.dropped_radiograph == "retake"
                and attempts == 1
                and in_window
            ):
                note_fault(ctx, "carm", exc.fault, "retaken (policy)")
                ctx.emit(CaptureRetake(step=step.id, fault=exc.fault, attempt=attempts))
                await ctx.clock.sleep_until(retry_at)
                continue
            else:
                note_fault(ctx, "carm", exc.fault, "recorded missed")
                reason = str(exc)
            result.status, result.detail = "missed", reason
            ctx.emit(CaptureFailed(step=step.id, reason=reason))
            return None


@runtime_checkable
class TimedKind(Protocol):
    """An acquisition kind the C-arm can fire on its own timer (a radiograph)."""

    async def acquire_at(self, ctx: ExamContext, step: Any, at_s: float) -> list[Acquired]: ...


#: A timed exposure the C-arm refused before arming it (no exposure made): sent untimed.
TIMED_REFUSALS = frozenset({TRIGGER_PAST, TRIGGER_SYNC})


async def exposure_latency_s(kind: AcquisitionKind, ctx: ExamContext) -> float:
    """The C-arm's declared command-to-beam-on latency, for kinds whose command is timed or
    sent early by it (radiographs); 0 for the others and for a C-arm that cannot say."""
    if not isinstance(kind, TimedKind):
        return 0.0
    try:
        return (await ctx.devices.carm.capabilities()).exposure_latency_s
    except DeviceError:
        return 0.0


async def _trigger(
    kind: AcquisitionKind, ctx: ExamContext, deadline: float | None, *, allow_timed: bool
) -> Trigger:
    """How this acquisition's command goes out (:func:`~scheduler.exam.timing.choose_trigger`)."""
    if deadline is None:
        return Trigger("immediate")
    carm = ctx.devices.carm
    latency, timed_ok = 0.0, False
    if isinstance(kind, TimedKind):
        try:
            caps = await carm.capabilities()
            latency = caps.exposure_latency_s
            # not ready (sync too uncertain): the journal's command line says "early"
            timed_ok = (
                allow_timed and caps.timed_trigger and await carm.timed_trigger_ready() is None
            )
        except DeviceError:
            pass  # the C-arm cannot say: the command goes at the time point, as it always did
    return choose_trigger(
        deadline_s=deadline,
        now_s=ctx.clock.now(),
        exposure_latency_s=latency,
        timed_ok=timed_ok,
        time_scale=ctx.clock.time_scale,
    )


def refused_by_device(
    ctx: ExamContext, step: Acquisition, result: StepResult, exc: DeviceFault
) -> None:
    """The C-arm refused beyond its own hard limits: no exposure was made, and asking again
    would be refused again, so the step is missed (not retried) and the exam goes on, as for
    a dose interlock. The journal's ``interlock_refused`` line names the limit."""
    refusal = exc if isinstance(exc, DeviceLimitExceeded) else DeviceLimitExceeded.from_fault(exc)
    reason = (
        f"the C-arm's own limit refused {refusal.operation} ({refusal.reason}); "
        "no exposure made, not retried"
    )
    ctx.emit(InterlockRefusal(step=step.id, command=refusal.operation, reason=reason))
    result.status, result.detail = "missed", reason


async def _check_before_acquisition(
    kind: AcquisitionKind, ctx: ExamContext, step: Acquisition
) -> CArmStatus:
    """The safety kernel's checks; dose refusals are journaled and end only this step.

    An acquisition whose image could not be stored is refused (:class:`StorageFull` ends the
    exam): the patient is never irradiated for an image that would be lost.
    """
    if ctx.journal.out_of_space:
        raise StorageFull(f"the disk holding {ctx.out_dir} is full (the journal used its reserve)")
    check_space(
        ctx.out_dir,
        frames_of(step) * ctx.frame_bytes + MARGIN_BYTES,
        f"the images of step {step.id}",
    )
    carm_status = await ctx.devices.carm.status()
    check_exposure(await ctx.devices.table.status(), carm_status, repositioning=ctx.repositioning)
    try:
        kind.check_dose(ctx, step)
    except InterlockRefused as exc:
        exc.dose = True
        ctx.emit(InterlockRefusal(step=step.id, command=exc.command, reason=exc.reason))
        raise
    return carm_status
