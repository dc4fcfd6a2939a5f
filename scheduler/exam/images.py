"""An acquisition's images: described, stored durably, *then* announced (decision 0007)."""

from __future__ import annotations

import contextlib
import dataclasses

from drivers import DeviceError, Frame, TablePosition

from ..imaging.chain import DevelopedImage
from ..protocol import CaptureStep, FluoroStep, TomoStep
from ..records import CaptureRecord, ContrastInfo, TomoInfo
from ..safety import fluoro_run_time_s
from .context import ExamContext
from .events import Captured, CaptureFailed, DoseNoticed, InjectorLinkLost, Kind
from .results import StepResult
from .store import DicomStore
from .timing import status_after_capture

Acquisition = CaptureStep | FluoroStep | TomoStep
#: one stored image: its frames, the fluoroscopy pulse rate, the tomosynthesis layer
Acquired = tuple[tuple[Frame, ...], float | None, TomoInfo | None]


async def record_capture(
    ctx: ExamContext,
    step: Acquisition,
    result: StepResult,
    frames: tuple[Frame, ...],
    pulse_rate: float | None,
    tomo: TomoInfo | None = None,
) -> None:
    """Store one image, then journal its ``capture`` line and book its dose."""
    first = frames[0]
    if result.device_s is None:
        result.device_s = first.acquired_at_s
    ctx.instance += 1
    kind = "tomo" if tomo else ("fluoro" if isinstance(step, FluoroStep) else "radiograph")
    record = CaptureRecord(
        step_id=step.id if tomo is None else f"{step.id}-{tomo.layer_height_mm:g}mm",
        label=step.title if tomo is None else f"{step.title} {tomo.layer_height_mm / 10:g} cm",
        kind=kind,
        instance_number=ctx.instance,
        frames=frames,
        planned_s=result.planned_s,
        commanded_s=result.commanded_s or first.acquired_at_s,
        device_s=first.acquired_at_s,
        acquisition_time=ctx.clock.wall_at(first.acquired_at_s),
        after_injection_s=None if ctx.anchor is None else first.acquired_at_s - ctx.anchor,
        patient_position=ctx.position,
        technique=first.technique,
        pose=first.pose,
        collimation=first.collimation,
        table=await _table_position(ctx),
        contrast=await contrast_info(ctx),
        pulse_rate_hz=pulse_rate,
        tomo=tomo,
        view_description=f"{step.view.field} {ctx.position}"
        + (
            f" {step.view.angulation.angle_deg:g}° {step.view.angulation.direction}"
            if step.view.angulation
            else ""
        ),
    )
    ctx.frame_bytes = max(ctx.frame_bytes, first.pixels.nbytes)
    image = await develop(ctx, record)
    record = image.presentation
    try:
        path = ctx.store.write(record)
    except OSError as exc:
        ctx.faults.append("storage.write_failed")
        with contextlib.suppress(OSError):
            ctx.emit(
                CaptureFailed(
                    step=step.id, reason=f"exposed, but the image could not be stored: {exc}"
                )
            )
        raise
    ctx.records.append(record)
    result.files.append(path.name)
    for extra in (image.held, image.for_processing):
        if extra is not None:
            _store_extra(ctx, result, extra, for_processing=extra is image.for_processing)
    result.status = status_after_capture(
        result.lateness_s, step.tolerance_s, step.late_window_s, step.id in ctx.taken_late
    )
    kerma = sum(f.dose.reference_air_kerma_mgy for f in frames)
    dap = sum(f.dose.dap_gy_cm2 for f in frames)
    ctx.dap_gy_cm2 += dap
    # fluoroscopy time is the run's duration (pedal time), not its pulse widths
    fluoro_s = fluoro_run_time_s(len(frames), pulse_rate or 0.0) if kind == "fluoro" else 0.0
    run_s = fluoro_run_time_s(len(frames), pulse_rate or 0.0)
    ctx.emit(
        Captured(
            step=step.id,
            file=path.name,
            image_kind=kind,
            frames=len(frames),
            planned_s=result.planned_s,
            commanded_s=result.commanded_s,
            device_s=result.device_s,
            after_injection_s=record.after_injection_s,
            position=ctx.position,
            kv=first.technique.kv,
            mas=first.technique.mas,
            layer_height_mm=None if tomo is None else tomo.layer_height_mm,
            reference_air_kerma_mgy=kerma,
            dap_gy_cm2=dap,
            trigger=result.trigger,
            lateness_s=result.lateness_s,
            device_lateness_s=result.device_lateness_s,
            record=record,
        )
    )
    for notice in ctx.dose.add(kerma, fluoro_s, run_s):
        ctx.emit(
            DoseNoticed(
                step=step.id, notice=Kind(notice.kind), message=notice.message, value=notice.value
            )
        )


async def develop(ctx: ExamContext, record: CaptureRecord) -> DevelopedImage:
    """``record`` through the store's host image chain (unchanged without one)."""
    chain = ctx.store.chain if isinstance(ctx.store, DicomStore) else None
    if chain is None:
        return DevelopedImage(record, None, None)
    await chain.prepare()
    return chain.develop(record)


def _store_extra(
    ctx: ExamContext, result: StepResult, record: CaptureRecord, *, for_processing: bool
) -> None:
    """A last-image-hold or "for processing" image: an instance of its own, after the
    acquisition's; failing to store it does not undo the acquisition's image."""
    assert isinstance(ctx.store, DicomStore)
    ctx.instance += 1
    record = dataclasses.replace(record, instance_number=ctx.instance)
    try:
        if for_processing:
            path = ctx.store.write_for_processing(record)
        else:
            path = ctx.store.write(record)
            ctx.records.append(record)
    except OSError:
        ctx.faults.append("storage.write_failed")
        return
    result.files.append(path.name)


async def _table_position(ctx: ExamContext) -> TablePosition:
    try:
        return (await ctx.devices.table.status()).position
    except DeviceError:
        return TablePosition()


async def contrast_info(ctx: ExamContext) -> ContrastInfo | None:
    """The contrast as the images record it: given so far, as the injector reports."""
    contrast = ctx.protocol.contrast
    if contrast is None or ctx.anchor is None:
        return None
    try:
        status = await ctx.devices.injector.status()
        delivered, ended = status.delivered_ml, status.ended_at_s
    except DeviceError as exc:  # injector link lost: its last report stands
        delivered, ended = ctx.contrast_ml, None
        if not ctx.health["injector"].startswith("lost"):
            ctx.health["injector"] = f"lost: {exc.detail}"
            ctx.faults.append("injector.link_lost")
            ctx.emit(InjectorLinkLost(step=ctx.current_step, error=str(exc)))
    inject = ctx.protocol.inject_step
    return ContrastInfo(
        agent=contrast.agent,
        concentration_mg_ml=contrast.concentration_mg_ml,
        volume_ml=delivered,
        start_time=ctx.clock.wall_at(ctx.anchor),
        stop_time=ctx.clock.wall_at(ended) if ended is not None else None,
        flow_rates_ml_s=tuple(p.flow_ml_s for p in inject.phases) if inject else (),
        flow_durations_s=tuple(p.volume_ml / p.flow_ml_s for p in inject.phases) if inject else (),
    )
