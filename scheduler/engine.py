"""Runs a protocol against a room's devices.

Timed steps are anchored to the injector-confirmed injection start and waited for with
absolute deadlines; the preparation of a timed capture (repositioning, table and positioner
moves, collimation, technique) happens *before* its deadline so the exposure fires on time.
Exposure and injection start are fire-once: never retried after an ambiguous outcome.
Every capture is written to disk as soon as it exists.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import generate_uid

from drivers import (
    Clock,
    CollimationField,
    DeviceError,
    DeviceEvent,
    DeviceFault,
    DeviceTimeout,
    FluoroRequest,
    FocalSpot,
    Frame,
    InjectionPhase,
    InjectionProgram,
    InjectorStatus,
    PositionerPose,
    TablePosition,
    Technique,
    TomoRequest,
)
from drivers.backends import DeviceSet

from .journal import ExamEvent, Journal
from .operator import Operator, Prompt
from .outputs import write_capture
from .protocol import (
    CaptureStep,
    FluoroStep,
    InjectStep,
    PromptStep,
    Protocol,
    TechniqueSpec,
    TomoStep,
)
from .records import CaptureRecord, ContrastInfo, ExamInfo, PatientInfo, TomoInfo
from .room import Room
from .safety import (
    InterlockRefused,
    abort_all,
    check_exposure,
    check_injection_program,
    check_injection_start,
)

log = logging.getLogger(__name__)

SID_MM = 1150.0


@dataclass
class StepResult:
    id: str
    label: str
    type: str
    status: str = "pending"  # pending | running | done | late | missed | failed | skipped
    planned_after_injection_s: float | None = None
    planned_s: float | None = None
    commanded_s: float | None = None
    device_s: float | None = None
    detail: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def lateness_s(self) -> float | None:
        if self.planned_s is None or self.commanded_s is None:
            return None
        return self.commanded_s - self.planned_s

    @property
    def device_lateness_s(self) -> float | None:
        if self.planned_s is None or self.device_s is None:
            return None
        return self.device_s - self.planned_s


@dataclass
class ExamProgress:
    """What the progress display shows; written by the runner, read by the display thread."""

    protocol: str
    state: str = "idle"  # idle | running | completed | aborted
    current_step: str = ""
    next_deadline_s: float | None = None
    next_step: str = ""
    images: int = 0
    steps_done: int = 0
    steps_total: int = 0
    contrast_ml: float = 0.0
    pressure_kpa: float = 0.0
    injection_start_s: float | None = None
    reference_air_kerma_mgy: float = 0.0
    message: str = ""


@dataclass
class ExamResult:
    state: str  # completed | aborted
    reason: str
    steps: list[StepResult]
    records: list[CaptureRecord]
    injection_start_s: float | None
    injector: InjectorStatus | None
    started_s: float
    ended_s: float
    abort_confirmations: dict[str, str] = field(default_factory=dict)


class ExamAborted(Exception):
    pass


class ExamRunner:
    def __init__(
        self,
        protocol: Protocol,
        room: Room,
        devices: DeviceSet,
        clock: Clock,
        operator: Operator,
        out_dir: Path,
        exam: ExamInfo,
        progress: ExamProgress | None = None,
        on_capture: Callable[[CaptureRecord], None] | None = None,
        on_event: Callable[[ExamEvent], None] | None = None,
    ) -> None:
        self.protocol = protocol
        self.room = room
        self.devices = devices
        self.clock = clock
        self.operator = operator
        self.out_dir = out_dir
        self.exam = exam
        self.progress = progress or ExamProgress(protocol.name)
        self.on_capture = on_capture
        self.results = [StepResult(s.id, s.title, s.type) for s in protocol.steps]
        self.records: list[CaptureRecord] = []
        self.journal = Journal(out_dir / "events.jsonl", clock, on_event)
        self._current_step: str | None = None
        self._position = "supine"
        self._repositioning = False
        self._anchor: float | None = None
        self._injector_status: InjectorStatus | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._instance = 0

    # -- public --------------------------------------------------------------------------
    async def run(self) -> ExamResult:
        started = self.clock.now()
        listener = self.journal.device_listener(lambda: self._current_step)
        unsubscribe = [
            d.subscribe(listener)
            for d in (self.devices.carm, self.devices.table, self.devices.injector)
        ]
        unsubscribe.append(self.devices.injector.subscribe(self._on_injector_event))
        self.progress.state = "running"
        self.progress.steps_total = len(self.protocol.steps)
        self.journal.record(
            "scheduler",
            "exam_started",
            protocol=self.protocol.name,
            room=self.room.name,
            study_uid=self.exam.study_instance_uid,
            steps=[s.id for s in self.protocol.steps],
        )
        state, reason, confirmations = "completed", "", {}
        try:
            for step, result in zip(self.protocol.steps, self.results, strict=True):
                self._current_step = step.id
                self.progress.current_step = step.title
                result.status = "running"
                await self._run_step(step, result)
                self.progress.steps_done += 1
            await self._finish_injection()
        except (ExamAborted, InterlockRefused, DeviceError) as exc:
            state, reason = "aborted", str(exc)
        except asyncio.CancelledError:
            state, reason = "aborted", "cancelled by the operator"
            confirmations = await self._abort(reason)
            self._close(state, reason, started, confirmations, unsubscribe)
            raise
        except Exception as exc:
            # A bug must still leave every device safe and the record closed, then surface.
            state, reason = "aborted", f"internal error: {type(exc).__name__}: {exc}"
            confirmations = await self._abort(reason)
            self._close(state, reason, started, confirmations, unsubscribe)
            raise
        if state == "aborted":
            confirmations = await self._abort(reason)
        return self._close(state, reason, started, confirmations, unsubscribe)

    # -- steps ---------------------------------------------------------------------------
    async def _run_step(self, step: object, result: StepResult) -> None:
        if isinstance(step, CaptureStep | FluoroStep | TomoStep):
            await self._capture(step, result)
        elif isinstance(step, InjectStep):
            await self._inject(step, result)
        elif isinstance(step, PromptStep):
            await self._prompt(step, result)
        else:  # pragma: no cover - the protocol model admits no other step
            raise TypeError(f"unknown step {step!r}")

    def _deadline(self, at: float | None, result: StepResult) -> float | None:
        if at is None:
            return None
        if self._anchor is None:
            raise ExamAborted(f"step {result.id}: timed step but the injection never started")
        result.planned_after_injection_s = at
        result.planned_s = self._anchor + at
        return result.planned_s

    async def _wait_deadline(self, deadline: float | None, result: StepResult) -> None:
        if deadline is None:
            return
        self.progress.next_deadline_s = deadline
        self.progress.next_step = result.label
        await self.clock.sleep_until(deadline)
        self.progress.next_deadline_s = None

    async def _capture(self, step: CaptureStep | FluoroStep | TomoStep, result: StepResult) -> None:
        deadline = self._deadline(step.at, result)
        await self._prepare_view(step)
        if deadline is not None and self.clock.now() > deadline + step.tolerance_s:
            result.status, result.detail = (
                "missed",
                (
                    f"preparation ended {self.clock.now() - deadline:.1f} s after the planned time "
                    f"(tolerance {step.tolerance_s:g} s)"
                ),
            )
            self.journal.record("scheduler", "capture_missed", step.id, reason=result.detail)
            return
        await self._wait_deadline(deadline, result)
        check_exposure(
            await self.devices.table.status(),
            await self.devices.carm.status(),
            repositioning=self._repositioning,
        )
        result.commanded_s = self.clock.now()
        self.journal.record(
            "scheduler",
            "command",
            step.id,
            command=step.type if step.type != "capture" else "expose",
            planned_s=result.planned_s,
        )
        try:
            acquired = await self._acquire(step)
        except DeviceTimeout as exc:
            # Fire-once: the beam may or may not have fired. Never re-send; record and go on.
            status = await self._safe_carm_status()
            result.status, result.detail = (
                "failed",
                f"outcome unknown ({exc}); C-arm status: {status}",
            )
            self.journal.record("scheduler", "capture_failed", step.id, reason=result.detail)
            return
        except DeviceFault as exc:
            result.status, result.detail = "missed", str(exc)
            self.journal.record("scheduler", "capture_failed", step.id, reason=result.detail)
            return
        for frames, pulse_rate, tomo in acquired:
            await self._record_capture(step, result, frames, pulse_rate, tomo)

    async def _acquire(
        self, step: CaptureStep | FluoroStep | TomoStep
    ) -> list[tuple[tuple[Frame, ...], float | None, TomoInfo | None]]:
        """Fire the acquisition once; each element becomes one stored image."""
        carm = self.devices.carm
        if isinstance(step, FluoroStep):
            run = await carm.fluoro(
                FluoroRequest(step.pulse_rate_hz, step.duration_s, self._fluoro_technique(step))
            )
            if not run.frames:
                raise DeviceFault(carm.name, "fluoro", "no_frames", "run ended without a frame")
            return [(run.frames, step.pulse_rate_hz, None)]
        if isinstance(step, TomoStep):
            series = await carm.tomosynthesis(
                TomoRequest(
                    tuple(step.layer_heights_mm),
                    self._technique(step.technique),
                    step.sweep_deg,
                    step.projections,
                )
            )
            sweep_s = series.ended_at_s - series.started_at_s
            return [
                ((layer,), None, TomoInfo(height, series.sweep_deg, series.projections, sweep_s))
                for layer, height in zip(series.layers, series.heights_mm, strict=True)
            ]
        return [((await carm.expose(),), None, None)]

    async def _prepare_view(self, step: CaptureStep | FluoroStep | TomoStep) -> None:
        view = step.view
        if view.position is not None and view.position != self._position:
            await self._reposition(step.id, view.position)
        field_spec = self.protocol.all_fields[view.field]
        table = self.devices.table
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
        self.journal.record(
            "scheduler",
            "command",
            step.id,
            command="prepare_view",
            field=view.field,
            longitudinal_mm=target.longitudinal_mm,
            secondary_angle_deg=secondary,
        )
        await asyncio.gather(
            table.move_to(target),
            self.devices.carm.move_positioner(pose),
            self.devices.carm.set_collimation(
                CollimationField(field_spec.width_mm, field_spec.height_mm)
            ),
        )
        if isinstance(step, FluoroStep):
            await self.devices.carm.set_technique(self._fluoro_technique(step))
        else:
            await self.devices.carm.set_technique(self._technique(step.technique))
        status = await table.status()
        if moved and status.motion_completed_at_s is not None:
            # Stable = motion complete (device-reported) plus the settle time.
            await self.clock.sleep_until(status.motion_completed_at_s + step.settle_s)

    async def _reposition(self, step_id: str, position: str) -> None:
        self._repositioning = True
        try:
            confirmed = await self._ask(
                Prompt(
                    step_id,
                    "reposition",
                    f"Turn the patient {_position_phrase(position)}, then confirm.",
                    position,
                )
            )
            if not confirmed:
                raise ExamAborted(
                    f"step {step_id}: the operator declined to reposition the patient"
                )
            self._position = position
        finally:
            self._repositioning = False

    async def _record_capture(
        self,
        step: CaptureStep | FluoroStep | TomoStep,
        result: StepResult,
        frames: tuple[Frame, ...],
        pulse_rate: float | None,
        tomo: TomoInfo | None = None,
    ) -> None:
        first = frames[0]
        if result.device_s is None:
            result.device_s = first.acquired_at_s
        self._instance += 1
        table = (await self.devices.table.status()).position
        kind = "tomo" if tomo else ("fluoro" if isinstance(step, FluoroStep) else "radiograph")
        record = CaptureRecord(
            step_id=step.id if tomo is None else f"{step.id}-{tomo.layer_height_mm:g}mm",
            label=step.title if tomo is None else f"{step.title} {tomo.layer_height_mm / 10:g} cm",
            kind=kind,
            instance_number=self._instance,
            frames=frames,
            planned_s=result.planned_s,
            commanded_s=result.commanded_s or first.acquired_at_s,
            device_s=first.acquired_at_s,
            acquisition_time=self.clock.wall_at(first.acquired_at_s),
            after_injection_s=None if self._anchor is None else first.acquired_at_s - self._anchor,
            patient_position=self._position,
            technique=first.technique,
            pose=first.pose,
            collimation=first.collimation,
            table=table,
            contrast=await self._contrast_info(),
            pulse_rate_hz=pulse_rate,
            tomo=tomo,
            view_description=f"{step.view.field} {self._position}"
            + (
                f" {step.view.angulation.angle_deg:g}° {step.view.angulation.direction}"
                if step.view.angulation
                else ""
            ),
        )
        path = write_capture(record, self.exam, self.out_dir)
        self.records.append(record)
        result.files.append(path.name)
        lateness = result.lateness_s
        tolerance = step.tolerance_s
        result.status = "late" if lateness is not None and lateness > tolerance else "done"
        self.progress.images += 1
        self.progress.reference_air_kerma_mgy += sum(f.dose.reference_air_kerma_mgy for f in frames)
        self.journal.record(
            "scheduler",
            "capture",
            step.id,
            file=path.name,
            frames=len(frames),
            planned_s=result.planned_s,
            commanded_s=result.commanded_s,
            device_s=result.device_s,
            after_injection_s=record.after_injection_s,
            position=self._position,
            kv=first.technique.kv,
            mas=first.technique.mas,
            layer_height_mm=None if tomo is None else tomo.layer_height_mm,
            reference_air_kerma_mgy=sum(f.dose.reference_air_kerma_mgy for f in frames),
        )
        if self.on_capture is not None:
            self.on_capture(record)

    async def _inject(self, step: InjectStep, result: StepResult) -> None:
        assert self.protocol.contrast is not None
        program = InjectionProgram(
            phases=tuple(InjectionPhase(p.flow_ml_s, p.volume_ml, p.delay_s) for p in step.phases),
            pressure_limit_kpa=step.limit_kpa,
            rise_time_s=step.rise_time_s,
            concentration_mg_ml=self.protocol.contrast.concentration_mg_ml,
        )
        injector = self.devices.injector
        try:
            check_injection_program(program, self.room.limits)
        except InterlockRefused as exc:
            self.journal.record(
                "safety", "interlock_refused", step.id, command=exc.command, reason=exc.reason
            )
            result.status, result.detail = "failed", exc.reason
            raise
        await injector.arm(program)
        self.journal.record(
            "scheduler",
            "command",
            step.id,
            command="arm",
            volume_ml=program.volume_ml,
            max_flow_ml_s=program.max_flow_ml_s,
            pressure_limit_kpa=program.pressure_limit_kpa,
        )
        confirmed = True
        if step.confirm:
            confirmed = await self._ask(
                Prompt(
                    step.id,
                    "confirm_injection",
                    f"Start injection: {program.volume_ml:g} mL {self.protocol.contrast.agent} at "
                    f"{program.max_flow_ml_s:g} mL/s (limit {program.pressure_limit_kpa:.0f} kPa)?",
                )
            )
        try:
            check_injection_start(await injector.status(), operator_confirmed=confirmed)
        except InterlockRefused as exc:
            self.journal.record(
                "safety", "interlock_refused", step.id, command=exc.command, reason=exc.reason
            )
            result.status, result.detail = "failed", exc.reason
            await injector.disarm()
            raise
        result.commanded_s = self.clock.now()
        self.journal.record("scheduler", "command", step.id, command="start_injection")
        try:
            await injector.start()
            status = await injector.wait_started()
        except DeviceTimeout:
            # Fire-once: never re-send start. Ask the device what happened instead.
            status = await injector.status()
            if status.started_at_s is None:
                result.status, result.detail = "failed", "injector did not confirm the start"
                raise ExamAborted("injection start not confirmed by the injector") from None
        assert status.started_at_s is not None
        self._anchor = status.started_at_s
        result.device_s = status.started_at_s
        result.status = "done"
        self.progress.injection_start_s = self._anchor
        self.journal.record(
            "scheduler",
            "injection_confirmed",
            step.id,
            started_at_s=status.started_at_s,
            commanded_s=result.commanded_s,
        )
        timeout = program.nominal_duration_s * 3 + 30
        self._monitor = asyncio.create_task(self._watch_injection(timeout))

    async def _watch_injection(self, timeout_s: float) -> None:
        try:
            status = await self.devices.injector.wait_finished(timeout_s=timeout_s)
        except DeviceTimeout as exc:
            self.journal.record("scheduler", "injection_overrun", reason=str(exc))
            await self.devices.injector.stop()
            status = await self.devices.injector.status()
        self._injector_status = status
        self.journal.record(
            "scheduler",
            "injection_finished",
            state=status.state.value,
            delivered_ml=round(status.delivered_ml, 3),
            faults=[f.value for f in status.faults],
        )

    async def _finish_injection(self) -> None:
        if self._monitor is not None:
            await self._monitor

    async def _prompt(self, step: PromptStep, result: StepResult) -> None:
        deadline = self._deadline(step.at, result)
        await self._wait_deadline(deadline, result)
        result.commanded_s = self.clock.now()
        if step.action == "reposition":
            assert step.position is not None
            await self._reposition(step.id, step.position)
        elif not await self._ask(Prompt(step.id, step.action, step.message)):
            result.status, result.detail = "skipped", "operator declined"
            return
        result.device_s = self.clock.now()
        result.status = "done"

    async def _ask(self, prompt: Prompt) -> bool:
        self.progress.message = prompt.message
        self.journal.record(
            "operator", "prompt", prompt.step, action=prompt.action, message=prompt.message
        )
        try:
            answer = await self.operator.ask(prompt)
        except EOFError as exc:
            raise ExamAborted(f"step {prompt.step}: {exc}") from None
        self.journal.record(
            "operator", "confirmed" if answer else "declined", prompt.step, action=prompt.action
        )
        if answer and self.devices.effects is not None and prompt.action != "confirm_injection":
            await self.devices.effects.apply(prompt.action, prompt.position)
        self.progress.message = ""
        return answer

    # -- helpers -------------------------------------------------------------------------
    def _technique(self, spec: TechniqueSpec | None) -> Technique:
        t = spec or self.protocol.technique
        return Technique.from_mas(
            kv=t.kv,
            mas=t.mas,
            ma=t.ma,
            focal_spot=FocalSpot(t.focal_spot),
            filtration_mm_al=t.filtration_mm_al,
            filtration_mm_cu=t.filtration_mm_cu,
        )

    @staticmethod
    def _fluoro_technique(step: FluoroStep) -> Technique:
        t = step.technique
        return Technique(
            kv=t.kv,
            ma=t.ma,
            exposure_ms=t.pulse_ms,
            focal_spot=FocalSpot.SMALL,
            filtration_mm_al=t.filtration_mm_al,
            filtration_mm_cu=t.filtration_mm_cu,
        )

    async def _contrast_info(self) -> ContrastInfo | None:
        contrast = self.protocol.contrast
        if contrast is None or self._anchor is None:
            return None
        status = await self.devices.injector.status()
        inject = self.protocol.inject_step
        return ContrastInfo(
            agent=contrast.agent,
            concentration_mg_ml=contrast.concentration_mg_ml,
            volume_ml=status.delivered_ml,
            start_time=self.clock.wall_at(self._anchor),
            stop_time=self.clock.wall_at(status.ended_at_s)
            if status.ended_at_s is not None
            else None,
            flow_rates_ml_s=tuple(p.flow_ml_s for p in inject.phases) if inject else (),
            flow_durations_s=tuple(p.volume_ml / p.flow_ml_s for p in inject.phases)
            if inject
            else (),
        )

    async def _safe_carm_status(self) -> str:
        try:
            s = await self.devices.carm.status()
            return f"beam_on={s.beam_on} ready={s.ready}"
        except DeviceError as exc:
            return f"unavailable ({exc})"

    def _on_injector_event(self, event: DeviceEvent) -> None:
        delivered = event.data.get("delivered_ml")
        if isinstance(delivered, int | float):
            self.progress.contrast_ml = float(delivered)
        pressure = event.data.get("pressure_kpa")
        if isinstance(pressure, int | float):
            self.progress.pressure_kpa = float(pressure)
        if event.kind in ("completed", "stopped", "faulted"):
            self.progress.pressure_kpa = 0.0  # no flow, no line pressure

    async def _abort(self, reason: str) -> dict[str, str]:
        if self._monitor is not None:
            self._monitor.cancel()
        report = await abort_all(self.devices)
        self.journal.record(
            "scheduler",
            "abort",
            reason=reason,
            confirmed=report.confirmed,
            duration_s=round(report.duration_s, 6),
        )
        for r in self.results:
            if r.status in ("pending", "running"):
                r.status = "skipped" if r.status == "pending" else "failed"
                r.detail = r.detail or f"exam aborted: {reason}"
        return report.confirmed

    def _close(
        self,
        state: str,
        reason: str,
        started: float,
        confirmations: dict[str, str],
        unsubscribe: list[Callable[[], None]],
    ) -> ExamResult:
        for u in unsubscribe:
            u()
        ended = self.clock.now()
        self.progress.state = state
        self.progress.current_step = ""
        self.journal.record(
            "scheduler",
            "exam_finished",
            state=state,
            reason=reason,
            images=len(self.records),
            duration_s=round(ended - started, 3),
        )
        self.journal.close()
        return ExamResult(
            state,
            reason,
            self.results,
            self.records,
            self._anchor,
            self._injector_status,
            started,
            ended,
            confirmations,
        )


def _position_phrase(position: str) -> str:
    return {
        "supine": "supine (on the back)",
        "prone": "prone (face down)",
        "lpo": "into the left posterior oblique (left side down, 30°)",
        "rpo": "into the right posterior oblique (right side down, 30°)",
    }.get(position, position)


def make_exam_info(
    protocol: Protocol, room: Room, devices: DeviceSet, wall_start: dt.datetime
) -> ExamInfo:
    info = devices.info
    birth = info.get("patient_birth_date")
    patient = PatientInfo(
        patient_id=str(info.get("patient_id", "ANON")),
        name=str(info.get("patient_name", "Anonymous")),
        sex=str(info.get("patient_sex", "O")),
        birth_date=dt.date.fromisoformat(birth) if isinstance(birth, str) else None,
        weight_kg=_float_or_none(info.get("patient_weight_kg")),
        height_cm=_float_or_none(info.get("patient_height_cm")),
    )
    seed = [patient.patient_id, protocol.name, wall_start.isoformat()]
    study_uid = generate_uid(entropy_srcs=[*seed, "study"])
    return ExamInfo(
        study_instance_uid=study_uid,
        series_instance_uid=generate_uid(entropy_srcs=[*seed, "series"]),
        study_id=wall_start.strftime("%y%m%d%H%M"),
        accession_number=f"FX{wall_start.strftime('%Y%m%d%H%M%S')}",
        study_description=f"{protocol.name} (CPT {protocol.procedure_code})",
        procedure_code=protocol.procedure_code,
        study_datetime=wall_start,
        patient=patient,
        institution=room.institution,
        station_name=room.station_name,
    )


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
