"""Preparing an acquisition's view: the patient's position, the table, the positioner, the
collimator and the technique, all before the time point so the exposure fires on time."""

from __future__ import annotations

import asyncio

from drivers import CollimationField, DeviceFault, PositionerPose, TablePosition, Technique

from ...dose_estimate import SID_MM
from ...safety import check_motion
from ..context import ExamContext
from ..events import MoveRetry, ViewCommanded
from ..faults import note_fault
from ..images import Acquisition
from ..results import ExamFaulted
from .prompt import reposition


async def prepare_view(ctx: ExamContext, step: Acquisition, technique: Technique) -> None:
    view = step.view
    if view.position is not None and view.position != ctx.position:
        await reposition(ctx, step, view.position)
    field_spec = ctx.protocol.all_fields[view.field]
    table = ctx.devices.table
    current = (await table.status()).position
    target = TablePosition(
        longitudinal_mm=field_spec.centre_mm,
        lateral_mm=current.lateral_mm,
        height_mm=current.height_mm,
        tilt_deg=current.tilt_deg,
    )
    secondary = view.angulation.secondary_angle_deg if view.angulation else 0.0
    pose = PositionerPose(secondary_angle_deg=secondary, sid_mm=SID_MM)
    moved = current != target
    check_motion(await ctx.devices.carm.status(), "move")
    ctx.emit(
        ViewCommanded(
            step=step.id,
            field=view.field,
            longitudinal_mm=target.longitudinal_mm,
            secondary_angle_deg=secondary,
        )
    )
    await asyncio.gather(
        _move_table(ctx, step.id, target),
        ctx.devices.carm.move_positioner(pose),
        ctx.devices.carm.set_collimation(
            CollimationField(field_spec.width_mm, field_spec.height_mm)
        ),
    )
    await ctx.devices.carm.set_technique(technique)
    ctx.view_step = step
    status = await table.status()
    if moved and status.motion_completed_at_s is not None:
        # Stable = motion complete (device-reported) plus the settle time.
        await ctx.clock.sleep_until(status.motion_completed_at_s + step.settle_s)


async def _move_table(ctx: ExamContext, step_id: str, target: TablePosition) -> None:
    attempts = 0
    retries = ctx.policy.table_stall_retries
    while True:
        try:
            await ctx.devices.table.move_to(target)
            return
        except DeviceFault as exc:
            attempts += 1
            note_fault(ctx, "table", exc.fault, f"move attempt {attempts}")
            if attempts > retries:
                raise ExamFaulted(
                    f"step {step_id}: table {exc.fault} persisted after {retries} re-tries ({exc})"
                ) from None
            ctx.emit(MoveRetry(step=step_id, fault=exc.fault, attempt=attempts))
