"""Runs a protocol against a room's devices.

Timed steps are anchored to the injector-confirmed injection start and waited for with
absolute deadlines; the preparation of a timed capture (repositioning, table and positioner
moves, collimation, technique) happens *before* its deadline so the exposure fires on time.
Exposure and injection start are fire-once: never retried after an ambiguous outcome.
Every capture is written to disk as soon as it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pydicom.uid import generate_uid

from drivers import (
    Clock,
    CollimationField,
    DeviceError,
    DeviceEvent,
    DeviceFault,
    DeviceLost,
    DeviceTimeout,
    FluoroRequest,
    FluoroRun,
    Frame,
    InjectorState,
    InjectorStatus,
    PositionerPose,
    TablePosition,
    Technique,
    TomoRequest,
    TomoSeries,
)
from drivers.backends import DeviceSet

from .commands import fluoro_technique_for, injection_program_for, technique_for
from .journal import ExamEvent, Journal
from .operator import Operator, Prompt, ScriptedOperator
from .outputs import write_capture
from .policy import FaultPolicy
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
from .recovery import PriorCapture, RecoveredExam
from .room import Room
from .safety import (
    ABORT_STEP_TIMEOUT_S,
    DoseMonitor,
    InterlockRefused,
    abort_all,
    abort_step_bound_s,
    check_exposure,
    check_injection_program,
    check_injection_start,
    check_motion,
)
from .state import ExamStatus, IllegalTransition, RunState, StateMachine, Transition
from .storage import (
    DEFAULT_FRAME_BYTES,
    MARGIN_BYTES,
    StorageFull,
    check_space,
    exam_bytes,
    frames_of,
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
    state: str = "idle"  # a RunState value
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
    #: each device's answer to the abort (role → "safe" or why not), once an abort ran
    abort_confirmations: dict[str, str] | None = None
    #: the runner driving the exam (it attaches itself): how a signal or a key reaches it
    runner: ExamRunner | None = field(default=None, repr=False, compare=False)

    def control(self, action: str, reason: str) -> str | None:
        """Pause or resume the attached exam; None when done, else why it was refused."""
        if self.runner is None:
            return "no exam is running yet"
        return self.runner.control(action, reason)


@dataclass
class ExamResult:
    state: str  # completed | aborted | faulted
    reason: str
    steps: list[StepResult]
    records: list[CaptureRecord]
    injection_start_s: float | None
    injector: InjectorStatus | None
    started_s: float
    ended_s: float
    abort_confirmations: dict[str, str] = field(default_factory=dict)
    #: images acquired before a restart (resumed exams), already on disk
    prior: list[PriorCapture] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    fluoro_time_s: float = 0.0
    #: contrast the injector reported delivering (its final or stop report; else its last)
    contrast_delivered_ml: float = 0.0
    #: the run was interrupted (Ctrl-C, a cancelled task): it aborted, then re-raised
    interrupted: bool = False

    @property
    def unfinished_steps(self) -> list[str]:
        """Steps that ended missed or failed."""
        return [s.id for s in self.steps if s.status in ("missed", "failed")]


class ExamAborted(Exception):
    pass


class ExamFaulted(Exception):
    """A device fault whose policy ends the exam."""


#: where a room that persists itself (the in-process simulator) keeps its state
SIM_STATE_DIR = "sim-state"
#: step statuses that are final (a resumed exam does not run these steps again)
FINAL_STATUSES = frozenset({"done", "late", "missed", "failed", "skipped"})
ROLES = ("injector", "carm", "table")


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
        recovered: RecoveredExam | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.protocol = protocol
        self.room = room
        self.devices = devices
        self.clock = clock
        self.operator = operator
        self.out_dir = out_dir
        self.exam = exam
        self.progress = progress or ExamProgress(protocol.name)
        self.progress.runner = self
        self.on_capture = on_capture
        self.results = [StepResult(s.id, s.title, s.type) for s in protocol.steps]
        self.records: list[CaptureRecord] = []
        self.recovered = recovered
        self.context = context or {}
        self.journal = Journal(
            out_dir / "events.jsonl",
            clock,
            on_event,
            start_seq=recovered.last_seq if recovered else 0,
        )
        self.policy = _effective_policy(room, protocol)
        self.machine = StateMachine(self._on_transition, clock.now)
        self.dose = DoseMonitor(room.dose)
        self._current_step: str | None = None
        self._position = "supine"
        self._repositioning = False
        self._anchor: float | None = None
        self._injector_status: InjectorStatus | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._steps_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._instance = 0
        self._resume_gate = asyncio.Event()
        self._resume_gate.set()
        # While a person holds the exam, a virtual clock follows the wall (as for prompts).
        self._pause_wall = contextlib.ExitStack()
        self._taken_late: set[str] = set()  # steps taken late inside their late window
        self._resumed_at_s: float | None = None  # loop time this process took over (resume)
        self._end: tuple[RunState, str] | None = None  # decided by a fault handler
        self._detected_s: float | None = None
        self._health: dict[str, str] = dict.fromkeys(ROLES, "ok")
        self._faults: list[str] = []
        self._prior: list[PriorCapture] = []
        self._dap = 0.0
        self._frame_bytes = DEFAULT_FRAME_BYTES
        #: the finished exam (also when run() ends by re-raising a cancellation or a bug)
        self.result: ExamResult | None = None
        self._roles = {
            devices.injector.name: "injector",
            devices.carm.name: "carm",
            devices.table.name: "table",
        }
        if recovered is not None:
            self._adopt(recovered)

    # -- public --------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self.machine.state

    def status(self) -> ExamStatus:
        """A snapshot of where the exam is."""
        return ExamStatus(
            state=self.machine.state,
            current_step=self._current_step,
            next_step=self.progress.next_step or None,
            next_deadline_s=self.progress.next_deadline_s,
            injection_start_s=self._anchor,
            contrast_delivered_ml=self.progress.contrast_ml,
            reference_air_kerma_mgy=self.dose.rak_mgy,
            dap_gy_cm2=self._dap,
            fluoro_time_s=self.dose.fluoro_s,
            images=len(self.records) + len(self._prior),
            devices=dict(self._health),
            faults=tuple(self._faults),
        )

    def pause(self, reason: str = "operator", *, real_time: bool = True) -> None:
        """Hold new commands (the one in progress completes). Time points never move.

        An injection under way runs on: the injector is physiological time (contrast given
        cannot be held back without reshaping the bolus the timed films are planned around);
        a technologist who wants the flow stopped stops the injector or aborts. On virtual
        time a pause follows the wall clock (a person holds the exam) unless ``real_time`` is
        False (tests that schedule the resume on the loop).

        Raises :class:`IllegalTransition` (journaled as ``control_refused``) unless running.
        """
        self._go(RunState.PAUSED, "pause", reason)
        if real_time:
            self._pause_wall.enter_context(self.clock.real_time_wait())
        self._resume_gate.clear()
        self.progress.message = f"PAUSED ({reason}): new commands held; time points unchanged"
        if self._monitor is not None and not self._monitor.done():
            self.journal.record(
                "scheduler",
                "paused_during_injection",
                self._current_step,
                delivered_ml=round(self.progress.contrast_ml, 3),
                note="the injection runs on its program (physiological time); not held",
            )

    def resume(self, reason: str = "operator") -> None:
        """Let held commands go; films that fell due meanwhile follow ``when_paused``."""
        self._go(RunState.RUNNING, "resume", reason)
        self._pause_wall.close()
        self._resume_gate.set()
        self.progress.message = ""

    def control(self, action: str, reason: str) -> str | None:
        """``pause`` or ``resume`` from an operator control; None when done, else why not."""
        try:
            if action == "pause":
                self.pause(reason)
            elif action == "resume":
                self.resume(reason)
            else:
                return f"unknown control {action!r} (pause or resume)"
        except IllegalTransition as exc:
            return exc.reason
        return None

    def _go(self, target: RunState, action: str, reason: str) -> None:
        try:
            self.machine.go(target, reason)
        except IllegalTransition as exc:
            self.journal.record(
                "scheduler",
                "control_refused",
                self._current_step,
                action=action,
                state=exc.current.value,
                reason=exc.reason,
            )
            raise

    async def run(self) -> ExamResult:
        started = self.clock.now() if self.recovered is None else self.recovered.started_s
        listener = self.journal.device_listener(lambda: self._current_step)
        unsubscribe = [
            d.subscribe(listener)
            for d in (self.devices.carm, self.devices.table, self.devices.injector)
        ]
        unsubscribe.append(self.devices.injector.subscribe(self._on_injector_event))
        self.progress.steps_total = len(self.protocol.steps)
        if self.recovered is None:
            self.journal.record(
                "scheduler",
                "exam_started",
                protocol=self.protocol.name,
                room=self.room.name,
                study_uid=self.exam.study_instance_uid,
                steps=[s.id for s in self.protocol.steps],
                context=self._context(),
            )
        else:
            self._resumed_at_s = self.clock.now()
            self.journal.record(
                "scheduler",
                "exam_resumed",
                after_seq=self.recovered.last_seq,
                resumed_at_s=self.clock.now(),
                injection_start_s=self._anchor,
                wall_at_loop0=self.clock.wall_at(0.0).isoformat(),
                prior_images=[p.file for p in self._prior],
                adopted_from_disk=[p.file for p in self._prior if p.recovered_from_disk],
                ignored_files=[
                    {"file": i.file, "reason": i.reason} for i in self.recovered.ignored
                ],
                journal_torn_tail=None
                if self.recovered.torn is None
                else {
                    "line": self.recovered.torn.line,
                    "bytes": self.recovered.torn.size,
                    "kept_in": self.recovered.torn.side_file,
                },
            )
            # Steps whose images were all found on disk are settled now: the record says so.
            for result in self.results:
                record = self.recovered.steps.get(result.id)
                if record is not None and record.settled_on_resume:
                    self._step_done(result)
        self.machine.go(RunState.PREPARING, "resume" if self.recovered else "start")
        persistence = self.devices.info.get("persistence")
        if persistence is not None and hasattr(persistence, "persist_to"):
            persistence.persist_to(self.out_dir / SIM_STATE_DIR)
        state, reason = RunState.COMPLETED, ""
        interrupted = False
        bug: BaseException | None = None
        try:
            await self._prepare()
            self.machine.go(RunState.RUNNING)
            if self.recovered is not None and self._anchor is not None:
                # The injection began before the restart: watch it to its end again.
                self._monitor = asyncio.create_task(self._watch_injection(600.0))
            self._steps_task = asyncio.create_task(self._run_steps())
            await self._steps_task
            await self._finish_injection()
            # Paused after the last step: the exam completes once the operator resumes.
            await self._gate()
        except ExamFaulted as exc:
            state, reason = RunState.FAULTED, str(exc)
        except StorageFull as exc:
            state, reason = RunState.ABORTED, f"storage: {exc}"
        except (ExamAborted, InterlockRefused, DeviceError) as exc:
            state, reason = RunState.ABORTED, str(exc)
        except OSError as exc:  # the record or an image could not be written (disk full, I/O)
            state, reason = RunState.ABORTED, f"storage: cannot write the exam's record: {exc}"
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._end is not None and (task is None or task.cancelling() == 0):
                state, reason = self._end
            else:
                state, reason = RunState.ABORTED, "cancelled by the operator"
                interrupted = True
        except Exception as exc:
            # A bug must still leave every device safe and the record closed, then surface.
            state, reason = RunState.ABORTED, f"internal error: {type(exc).__name__}: {exc}"
            bug = exc
        confirmations: dict[str, str] = {}
        if state is not RunState.COMPLETED:
            confirmations, again = await self._abort(reason)
            interrupted = interrupted or again
        self.result = self._close(state, reason, started, confirmations, unsubscribe)
        self.result.interrupted = interrupted
        if bug is not None:
            raise bug
        if interrupted:
            raise asyncio.CancelledError
        return self.result

    async def _prepare(self) -> None:
        """Before the first command: room on disk, and no device left in a previous exam's state."""
        if self.recovered is None:
            check_space(self.out_dir, exam_bytes(self.protocol), "this exam's images")
            await self._reset_injector()

    async def _reset_injector(self) -> None:
        """An injector still holding an earlier exam's injection is reset here or refused.

        A completed, stopped or faulted program is cleared with ``disarm`` (a new program for
        a new patient); an injector that is still injecting is never touched — the exam is
        refused, before anything is exposed.
        """
        injector = self.devices.injector
        status = await injector.status()
        if _clean(status):
            return
        if status.state in (InjectorState.INJECTING, InjectorState.HOLDING):
            raise ExamAborted(
                f"the injector is {status.state.value} ({status.delivered_ml:.1f} mL delivered) "
                "before this exam began: refused; finish or stop that injection at the injector"
            )
        await injector.disarm()
        after = await injector.status()
        self.journal.record(
            "scheduler",
            "injector_reset",
            found_state=status.state.value,
            found_delivered_ml=round(status.delivered_ml, 3),
            state=after.state.value,
            reason="the injector held an earlier exam's injection; cleared before this exam",
        )
        if not _clean(after):
            raise ExamAborted(
                f"the injector still reports an earlier injection after a reset (state "
                f"{after.state.value}, {after.delivered_ml:.1f} mL, started "
                f"{after.started_at_s}): refused before any exposure"
            )

    # -- steps ---------------------------------------------------------------------------
    async def _run_steps(self) -> None:
        for step, result in zip(self.protocol.steps, self.results, strict=True):
            if result.status in FINAL_STATUSES:
                continue  # finished before a restart
            self._current_step = step.id
            self.progress.current_step = step.title
            result.status = "running"
            try:
                await self._run_step(step, result)
            except (DeviceLost, DeviceTimeout) as exc:
                await self._device_lost(exc, result)
            except InterlockRefused as exc:
                if exc.command not in ("expose", "fluoro", "tomo") or not exc.dose:
                    raise
                result.status, result.detail = "missed", exc.reason
            if result.status == "running":
                result.status = "done"
            self._step_done(result)
            self.progress.steps_done += 1
        self._current_step = None

    def _step_done(self, result: StepResult) -> None:
        self.journal.record(
            "scheduler",
            "step_done",
            result.id,
            status=result.status,
            detail=result.detail,
            planned_after_injection_s=result.planned_after_injection_s,
            planned_s=result.planned_s,
            commanded_s=result.commanded_s,
            device_s=result.device_s,
            files=result.files,
        )

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
        self.progress.next_step = ""

    async def _gate(self) -> float:
        """Wait while paused; returns how long this call waited (0 when running)."""
        if self._resume_gate.is_set():
            return 0.0
        t0 = self.clock.now()
        await self._resume_gate.wait()
        return self.clock.now() - t0

    def _held_reason(self, deadline: float, paused_s: float) -> str | None:
        """Why a film is past its time point through no fault of the room, if it is."""
        if paused_s > 0:
            return "fell due while the exam was paused"
        if self._resumed_at_s is not None and deadline < self._resumed_at_s:
            return "fell due while the controlling process was down (restart)"
        return None

    async def _capture(self, step: CaptureStep | FluoroStep | TomoStep, result: StepResult) -> None:
        deadline = self._deadline(step.at, result)
        if await self._recover_in_flight(step, result):
            return
        paused = await self._gate()
        await self._prepare_view(step)
        await self._wait_deadline(deadline, result)
        paused += await self._gate()
        window = step.late_window_s if step.late_window_s is not None else step.tolerance_s
        if deadline is not None and self.clock.now() > deadline:
            late = self.clock.now() - deadline
            held = self._held_reason(deadline, paused)
            if held is not None:
                policy = step.when_paused or self.protocol.when_paused
                if policy == "miss" or late > window:
                    result.status, result.detail = (
                        "missed",
                        f"{held} ({late:.1f} s late; policy {policy}, late window {window:g} s)",
                    )
                    self.journal.record(
                        "scheduler", "capture_missed", step.id, reason=result.detail
                    )
                    return
                if late > step.tolerance_s:
                    result.detail = f"taken {late:.1f} s late: {held}"
                    self._taken_late.add(step.id)
            elif late > step.tolerance_s:
                result.status, result.detail = (
                    "missed",
                    f"preparation ended {late:.1f} s after the planned time "
                    f"(tolerance {step.tolerance_s:g} s)",
                )
                self.journal.record("scheduler", "capture_missed", step.id, reason=result.detail)
                return
        attempts = 0
        while True:
            carm_status = await self._check_before_acquisition(step)
            result.commanded_s = self.clock.now()
            self.journal.record(
                "scheduler",
                "command",
                step.id,
                command=step.type if step.type != "capture" else "expose",
                planned_s=result.planned_s,
                kerma_before_mgy=carm_status.cumulative_reference_air_kerma_mgy,
            )
            try:
                acquired = await self._acquire(step)
            except DeviceLost as exc:
                # Fire-once: the link died with the command in flight; the outcome is unknown.
                result.status, result.detail = "failed", f"outcome unknown ({exc})"
                self.journal.record("scheduler", "capture_failed", step.id, reason=result.detail)
                raise
            except DeviceTimeout as exc:
                # Fire-once: the beam may or may not have fired. Never re-send; record, go on.
                status = await self._safe_carm_status()
                result.status, result.detail = (
                    "failed",
                    f"outcome unknown ({exc}); C-arm status: {status}",
                )
                self.journal.record("scheduler", "capture_failed", step.id, reason=result.detail)
                self._note_fault("carm", "ambiguous_acquisition", "recorded failed, not retried")
                return
            except DeviceFault as exc:
                attempts += 1
                retry_at = self.clock.now() + self.policy.generator_retry_delay_s
                in_window = deadline is None or retry_at <= deadline + window
                if exc.fault in self.policy.before_beam_faults:
                    # The device says no exposure was made: taking it again is not a replay.
                    self._note_fault("carm", exc.fault, "no exposure made")
                    if attempts <= self.policy.generator_retries and in_window:
                        self.journal.record(
                            "scheduler",
                            "capture_retry",
                            step.id,
                            fault=exc.fault,
                            attempt=attempts,
                            reason=str(exc),
                        )
                        await self.clock.sleep_until(retry_at)
                        continue
                    reason = f"{exc} (no exposure made; not retaken: " + (
                        "retries used up)" if in_window else "outside the tolerance window)"
                    )
                elif (
                    exc.fault == "dropped_frame"
                    and self.policy.dropped_radiograph == "retake"
                    and attempts == 1
                    and in_window
                ):
                    self._note_fault("carm", exc.fault, "retaken (policy)")
                    self.journal.record(
                        "scheduler", "capture_retry", step.id, fault=exc.fault, attempt=attempts
                    )
                    await self.clock.sleep_until(retry_at)
                    continue
                else:
                    self._note_fault("carm", exc.fault, "recorded missed")
                    reason = str(exc)
                result.status, result.detail = "missed", reason
                self.journal.record("scheduler", "capture_failed", step.id, reason=reason)
                return
            break
        for frames, pulse_rate, tomo in acquired:
            await self._record_capture(step, result, frames, pulse_rate, tomo)
        if isinstance(step, FluoroStep):
            got = sum(len(f) for f, _, _ in acquired)
            expected = FluoroRequest(
                step.pulse_rate_hz, step.duration_s, self._fluoro_technique(step)
            ).n_pulses
            self.journal.record("scheduler", "fluoro_done", step.id, frames=got, expected=expected)
            if got < expected:
                self._note_fault("carm", "dropped_frames", f"kept the {got} of {expected} frames")
                result.detail = f"{expected - got} of {expected} frames dropped by the detector"

    async def _check_before_acquisition(self, step: CaptureStep | FluoroStep | TomoStep) -> Any:
        """The safety kernel's checks; dose refusals are journaled and end only this step.

        An acquisition whose image could not be stored is refused (:class:`StorageFull` ends
        the exam): the patient is never irradiated for an image that would be lost.
        """
        if self.journal.out_of_space:
            raise StorageFull(
                f"the disk holding {self.out_dir} is full (the journal used its reserve)"
            )
        check_space(
            self.out_dir,
            frames_of(step) * self._frame_bytes + MARGIN_BYTES,
            f"the images of step {step.id}",
        )
        carm_status = await self.devices.carm.status()
        check_exposure(
            await self.devices.table.status(), carm_status, repositioning=self._repositioning
        )
        try:
            if isinstance(step, FluoroStep):
                t = step.technique
                self.dose.check_fluoro(step.duration_s, t.kv, t.ma, t.pulse_ms, step.pulse_rate_hz)
            else:
                self.dose.check_exposure_dose(step.type if step.type != "capture" else "expose")
        except InterlockRefused as exc:
            exc.dose = True
            self.journal.record(
                "safety", "interlock_refused", step.id, command=exc.command, reason=exc.reason
            )
            raise
        return carm_status

    async def _recover_in_flight(
        self, step: CaptureStep | FluoroStep | TomoStep, result: StepResult
    ) -> bool:
        """After a restart: finish the step that was in flight without ever re-firing.

        Returns True when the step is settled (images adopted or recovered, or recorded
        failed because the beam fired and the image is gone).
        """
        flight = self.recovered.in_flight if self.recovered else None
        if flight is None or flight.step != step.id:
            return False
        self.recovered.in_flight = None  # type: ignore[union-attr]
        result.files.extend(f for f in flight.files if f not in result.files)
        expected = len(step.layer_heights_mm) if isinstance(step, TomoStep) else 1
        if len(result.files) >= expected:
            result.status = "done"
            result.detail = "image(s) written before the restart"
            return True
        if not flight.commanded or flight.command_t_s is None:
            return False  # nothing was fired: run the step normally
        result.commanded_s = flight.command_t_s
        persistence = self.devices.info.get("persistence")
        found: list[tuple[str, Any]] = []
        if persistence is not None and hasattr(persistence, "recover_acquisitions"):
            found = persistence.recover_acquisitions(flight.command_t_s)
        if found:
            kind, payload = found[0]
            acquired = _as_acquired(kind, payload, step)
            have = {f.split("-", 1)[1] for f in result.files if "-" in f}
            for frames, pulse_rate, tomo in acquired:
                sid = step.id if tomo is None else f"{step.id}-{tomo.layer_height_mm:g}mm"
                if f"{sid}.dcm" in have:
                    continue
                await self._record_capture(step, result, frames, pulse_rate, tomo)
            result.detail = "recovered from the detector's memory after a restart"
            self.journal.record("scheduler", "capture_recovered", step.id, files=result.files)
            return True
        carm = await self.devices.carm.status()
        before = flight.kerma_before_mgy
        fired = flight.beam_seen or (
            before is not None and carm.cumulative_reference_air_kerma_mgy > before + 1e-9
        )
        if fired:
            result.status, result.detail = (
                "failed",
                "the acquisition was made before the restart and its image could not be "
                "recovered; not repeated (fire-once)",
            )
            self.journal.record("scheduler", "capture_failed", step.id, reason=result.detail)
            return True
        self.journal.record(
            "scheduler",
            "command_not_executed",
            step.id,
            reason="the journal and the C-arm show no acquisition for the command sent before "
            "the restart; acquiring now is a first exposure, not a replay",
        )
        return False

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
            return _as_acquired("fluoro", run, step)
        if isinstance(step, TomoStep):
            series = await carm.tomosynthesis(
                TomoRequest(
                    tuple(step.layer_heights_mm),
                    self._technique(step.technique),
                    step.sweep_deg,
                    step.projections,
                )
            )
            return _as_acquired("tomo", series, step)
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
        check_motion(await self.devices.carm.status(), "move")
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
            self._move_table(step.id, target),
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

    async def _move_table(self, step_id: str, target: TablePosition) -> None:
        attempts = 0
        while True:
            try:
                await self.devices.table.move_to(target)
                return
            except DeviceFault as exc:
                attempts += 1
                self._note_fault("table", exc.fault, f"move attempt {attempts}")
                if attempts > self.policy.table_stall_retries:
                    raise ExamFaulted(
                        f"step {step_id}: table {exc.fault} persisted after "
                        f"{self.policy.table_stall_retries} re-tries ({exc})"
                    ) from None
                self.journal.record(
                    "scheduler", "move_retry", step_id, fault=exc.fault, attempt=attempts
                )

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
        table = await self._table_position()
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
        self._frame_bytes = max(self._frame_bytes, first.pixels.nbytes)
        try:
            path = write_capture(record, self.exam, self.out_dir)
        except OSError as exc:
            self._faults.append("storage.write_failed")
            with contextlib.suppress(OSError):
                self.journal.record(
                    "scheduler",
                    "capture_failed",
                    step.id,
                    reason=f"exposed, but the image could not be stored: {exc}",
                )
            raise
        self.records.append(record)
        result.files.append(path.name)
        lateness = result.lateness_s
        tolerance = step.tolerance_s
        if step.late_window_s is not None and step.id in self._taken_late:
            tolerance = max(tolerance, step.late_window_s)
        result.status = "late" if lateness is not None and lateness > tolerance else "done"
        kerma = sum(f.dose.reference_air_kerma_mgy for f in frames)
        self.progress.images += 1
        self.progress.reference_air_kerma_mgy += kerma
        self._dap += sum(f.dose.dap_gy_cm2 for f in frames)
        fluoro_s = first.technique.exposure_ms / 1000.0 * len(frames) if kind == "fluoro" else 0.0
        run_s = len(frames) / pulse_rate if pulse_rate else 0.0
        self.journal.record(
            "scheduler",
            "capture",
            step.id,
            file=path.name,
            image_kind=kind,
            frames=len(frames),
            planned_s=result.planned_s,
            commanded_s=result.commanded_s,
            device_s=result.device_s,
            after_injection_s=record.after_injection_s,
            position=self._position,
            kv=first.technique.kv,
            mas=first.technique.mas,
            layer_height_mm=None if tomo is None else tomo.layer_height_mm,
            reference_air_kerma_mgy=kerma,
            dap_gy_cm2=sum(f.dose.dap_gy_cm2 for f in frames),
        )
        for notice in self.dose.add(kerma, fluoro_s, run_s):
            self.journal.record(
                "safety", notice.kind, step.id, message=notice.message, value=notice.value
            )
            self.progress.message = notice.message
        if self.on_capture is not None:
            self.on_capture(record)

    async def _table_position(self) -> TablePosition:
        try:
            return (await self.devices.table.status()).position
        except DeviceError:
            return TablePosition()

    async def _inject(self, step: InjectStep, result: StepResult) -> None:
        assert self.protocol.contrast is not None
        injector = self.devices.injector
        if await self._recover_injection(step, result):
            return
        program = injection_program_for(step, self.protocol.contrast)
        try:
            check_injection_program(program, self.room.limits)
        except InterlockRefused as exc:
            self.journal.record(
                "safety", "interlock_refused", step.id, command=exc.command, reason=exc.reason
            )
            result.status, result.detail = "failed", exc.reason
            raise
        await self._gate()
        try:
            if (await injector.status()).state is not InjectorState.ARMED:
                await injector.arm(program)
        except DeviceFault as exc:
            self._injector_fault_before_start(exc, result)
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
        await self._gate()
        status = await injector.status()
        if status.state is InjectorState.FAULTED:
            self._injector_fault_before_start(
                DeviceFault(injector.name, "start", _fault_names(status), "before the start"),
                result,
            )
        try:
            check_injection_start(status, operator_confirmed=confirmed)
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
        except DeviceFault as exc:
            self._injector_fault_before_start(exc, result)
        except DeviceTimeout:
            # Fire-once: never re-send start. Ask the device what happened instead.
            status = await injector.status()
            if status.started_at_s is None:
                result.status, result.detail = "failed", "injector did not confirm the start"
                raise ExamAborted("injection start not confirmed by the injector") from None
        assert status.started_at_s is not None
        self._confirm_injection(step, result, status.started_at_s, program.nominal_duration_s)

    def _confirm_injection(
        self, step: InjectStep, result: StepResult, started_at_s: float, nominal_s: float
    ) -> None:
        self._anchor = started_at_s
        result.device_s = started_at_s
        result.status = "done"
        self.progress.injection_start_s = self._anchor
        self.journal.record(
            "scheduler",
            "injection_confirmed",
            step.id,
            started_at_s=started_at_s,
            started_wall=self.clock.wall_at(started_at_s).isoformat(),
            commanded_s=result.commanded_s,
        )
        self._monitor = asyncio.create_task(self._watch_injection(nominal_s * 3 + 30))

    async def _recover_injection(self, step: InjectStep, result: StepResult) -> bool:
        """After a restart with the start already sent: adopt the injection, never re-send."""
        rec = self.recovered
        if rec is None or rec.in_flight is None or rec.in_flight.step != step.id:
            return False
        flight, rec.in_flight = rec.in_flight, None
        if "start_injection" not in flight.commanded:
            return False
        status = await self.devices.injector.status()
        if status.state is InjectorState.INJECTING and status.started_at_s is None:
            status = await self.devices.injector.wait_started()
        nominal = sum(p.volume_ml / p.flow_ml_s + p.delay_s for p in step.phases) + 1.0
        if status.started_at_s is not None:
            result.commanded_s = flight.command_t_s
            self.journal.record(
                "scheduler",
                "injection_adopted",
                step.id,
                reason="the start was sent before the restart; the injector reports it began",
                started_at_s=status.started_at_s,
            )
            self._confirm_injection(step, result, status.started_at_s, nominal)
            return True
        if status.delivered_ml > 0 or status.state not in (InjectorState.ARMED, InjectorState.IDLE):
            raise ExamFaulted(
                f"the injector is {status.state.value} with {status.delivered_ml:.1f} mL "
                "delivered but reports no start time; not re-sent (fire-once)"
            )
        self.journal.record(
            "scheduler",
            "command_not_executed",
            step.id,
            reason="the start was sent before the restart but the injector reports it never "
            "began (nothing delivered); the operator confirms again before a first start",
        )
        return False

    def _injector_fault_before_start(self, exc: DeviceFault, result: StepResult) -> NoReturn:
        self._note_fault("injector", exc.fault, "before the injection started: exam ends")
        result.status, result.detail = "failed", str(exc)
        raise ExamFaulted(
            f"injector fault before the injection started ({exc.fault}): timed films need a "
            "confirmed start"
        )

    async def _watch_injection(self, timeout_s: float) -> None:
        injector = self.devices.injector
        try:
            status = await injector.wait_finished(timeout_s=timeout_s)
        except DeviceTimeout as exc:
            self.journal.record("scheduler", "injection_overrun", reason=str(exc))
            try:
                await injector.stop()
                status = await injector.status()
            except DeviceError as err:
                self.journal.record("scheduler", "injection_unconfirmed", reason=str(err))
                return
        except DeviceError as exc:
            self.journal.record("scheduler", "injection_unconfirmed", reason=str(exc))
            return
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
        for task in list(self._side_tasks):
            await task

    async def _prompt(self, step: PromptStep, result: StepResult) -> None:
        deadline = self._deadline(step.at, result)
        await self._wait_deadline(deadline, result)
        await self._gate()
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
            "operator",
            "prompt",
            prompt.step,
            action=prompt.action,
            message=prompt.message,
            position=prompt.position,
        )
        try:
            answer = await self.operator.ask(prompt)
        except EOFError as exc:
            raise ExamAborted(f"step {prompt.step}: {exc}") from None
        self.journal.record(
            "operator",
            "confirmed" if answer else "declined",
            prompt.step,
            action=prompt.action,
            position=prompt.position,
        )
        if answer and self.devices.effects is not None and prompt.action != "confirm_injection":
            await self.devices.effects.apply(prompt.action, prompt.position)
        self.progress.message = ""
        return answer

    # -- faults --------------------------------------------------------------------------
    def _note_fault(self, role: str, fault: str, reaction: str) -> None:
        self._detected_s = self.clock.now()
        self._faults.append(f"{role}.{fault}")
        self._health[role] = f"faulted: {fault}"
        self.journal.record(
            "scheduler", "fault", self._current_step, device=role, fault=fault, reaction=reaction
        )

    def _on_injector_event(self, event: DeviceEvent) -> None:
        delivered = event.data.get("delivered_ml")
        if isinstance(delivered, int | float):
            self.progress.contrast_ml = float(delivered)
        pressure = event.data.get("pressure_kpa")
        if isinstance(pressure, int | float):
            self.progress.pressure_kpa = float(pressure)
        if event.kind in ("completed", "stopped", "faulted"):
            self.progress.pressure_kpa = 0.0  # no flow, no line pressure
        if event.kind in ("faulted", "fault_reported"):
            faults = event.data.get("faults") or [event.data.get("fault")]
            for fault in faults:
                if fault:  # an event that names no fault (an empty list) is no fault
                    self._injector_fault(str(fault))

    def _injector_fault(self, fault: str) -> None:
        """An injector fault reported by the device (it has halted its flow itself)."""
        if self._anchor is None:
            self._note_fault("injector", fault, "before the injection started")
            return  # the inject step sees the faulted injector and ends the exam
        decision = self.policy.injector.get(fault, "abort")
        self._note_fault(
            "injector",
            fault,
            "injection stopped; imaging continues"
            if decision == "continue"
            else "injection stopped; exam ends",
        )
        self._spawn(self._confirm_injector_stopped())
        if decision == "abort":
            self._end_exam(RunState.FAULTED, f"injector fault {fault} (policy: abort)")

    async def _confirm_injector_stopped(self) -> None:
        try:
            await self.devices.injector.stop()
            confirmed = "stopped"
        except DeviceError as exc:
            confirmed = f"unconfirmed: {exc}"
        self.journal.record("scheduler", "injection_stop_confirmed", result=confirmed)

    async def _device_lost(self, exc: DeviceLost | DeviceTimeout, result: StepResult) -> None:
        """A device stopped answering: its safe state, then the policy's decision."""
        self._detected_s = self.clock.now()
        role = self._roles.get(exc.device, exc.device)
        self._health[role] = f"lost: {exc.detail}"
        self._faults.append(f"{role}.link_lost")
        device = getattr(self.devices, role, None)
        safe = "n/a"
        if device is not None:
            try:
                async with asyncio.timeout(ABORT_STEP_TIMEOUT_S * 1.1):
                    await device.safe_state(timeout_s=ABORT_STEP_TIMEOUT_S)
                safe = "safe"
            except (TimeoutError, DeviceError) as err:
                safe = f"unconfirmed: {err or 'no answer'}"
        decision = self.policy.link_lost.get(role, "abort")
        if role == "injector" and self._anchor is None:
            decision = "abort"  # no confirmed start: nothing to anchor the films to
        self.journal.record(
            "scheduler",
            "device_lost",
            result.id,
            device=role,
            error=str(exc),
            safe_state=safe,
            decision=decision,
        )
        if result.status == "running":
            result.status = "failed"
            result.detail = result.detail or f"{role} lost: {exc}"
        if decision == "abort":
            raise ExamFaulted(f"{role} lost ({exc}); policy: abort")

    def _end_exam(self, state: RunState, reason: str) -> None:
        """Called from event handlers: stop the steps now; run() aborts into safe state."""
        if self._end is not None:
            return
        self._detected_s = self.clock.now()
        self._end = (state, reason)
        if self._steps_task is not None and not self._steps_task.done():
            self._steps_task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- helpers -------------------------------------------------------------------------
    def _technique(self, spec: TechniqueSpec | None) -> Technique:
        return technique_for(spec or self.protocol.technique)

    @staticmethod
    def _fluoro_technique(step: FluoroStep) -> Technique:
        return fluoro_technique_for(step.technique)

    async def _contrast_info(self) -> ContrastInfo | None:
        contrast = self.protocol.contrast
        if contrast is None or self._anchor is None:
            return None
        try:
            status = await self.devices.injector.status()
            delivered, ended = status.delivered_ml, status.ended_at_s
        except DeviceError as exc:  # injector link lost: its last report stands
            delivered, ended = self.progress.contrast_ml, None
            if not self._health["injector"].startswith("lost"):
                self._health["injector"] = f"lost: {exc.detail}"
                self._faults.append("injector.link_lost")
                self.journal.record(
                    "scheduler",
                    "device_lost",
                    self._current_step,
                    device="injector",
                    error=str(exc),
                    decision="continue",
                    safe_state="the injector runs its program on its own",
                )
        inject = self.protocol.inject_step
        return ContrastInfo(
            agent=contrast.agent,
            concentration_mg_ml=contrast.concentration_mg_ml,
            volume_ml=delivered,
            start_time=self.clock.wall_at(self._anchor),
            stop_time=self.clock.wall_at(ended) if ended is not None else None,
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

    def _on_transition(self, t: Transition) -> None:
        self.progress.state = t.target.value
        self.journal.record(
            "scheduler",
            "state",
            self._current_step,
            from_state=t.source.value,
            to_state=t.target.value,
            reason=t.reason,
        )

    def _context(self) -> dict[str, Any]:
        """What `fluoroctl resume` needs to rebuild this exam without the original files."""
        return {
            **self.context,
            "protocol": self.protocol.model_dump(mode="json", exclude_unset=True),
            "room": self.room.model_dump(mode="json", exclude_unset=True),
            "patient": self.devices.info.get("scenario"),
            "operator": "scripted" if isinstance(self.operator, ScriptedOperator) else "terminal",
            "virtual_time": self.clock.is_virtual,
            "wall_at_loop0": self.clock.wall_at(0.0).isoformat(),
            # loop time ↔ time.monotonic(): a resumed process continues on this time axis
            "clock": self.clock.mapping,
            # the links as resolved when the room was opened (sim serve's ptys, ports)
            "links": self.devices.info.get("links"),
            "exam": _exam_json(self.exam),
        }

    def _adopt(self, rec: RecoveredExam) -> None:
        """Take over the finished steps, images and anchor of an interrupted exam."""
        for result in self.results:
            r = rec.steps.get(result.id)
            if r is None or r.status == "pending":
                continue
            result.status, result.detail = r.status, r.detail
            result.planned_after_injection_s = r.planned_after_injection_s
            result.planned_s, result.commanded_s, result.device_s = (
                r.planned_s,
                r.commanded_s,
                r.device_s,
            )
            result.files = list(r.files)
            self.progress.steps_done += 1
        self._anchor = rec.injection_start_s
        self.progress.injection_start_s = self._anchor
        self._position = rec.position
        self._instance = rec.instance
        self._prior = list(rec.prior)
        self._faults = list(rec.faults)
        self.progress.images = len(self._prior)
        kerma = sum(p.reference_air_kerma_mgy for p in self._prior)
        self.progress.reference_air_kerma_mgy = kerma
        self.dose = DoseMonitor(self.room.dose, rak_mgy=kerma)

    async def _abort(self, reason: str) -> tuple[dict[str, str], bool]:
        """Every device to its safe state; nothing that arrives meanwhile can cut it short.

        The sequence runs in a task of its own, awaited through ``asyncio.shield``: a second
        Ctrl-C, SIGTERM or ``task.cancel()`` is journaled (``abort_interrupt_ignored``) and
        the wait goes on, so no device is ever skipped. Returns each device's confirmation and
        whether such an interruption arrived (the caller re-raises it once the record is
        closed).
        """
        if self._monitor is not None:
            self._monitor.cancel()
        for task in list(self._side_tasks):
            task.cancel()
        job = asyncio.create_task(self._abort_devices(reason))
        interrupted = False
        while not job.done():
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                if job.cancelled():  # pragma: no cover - nobody else holds the task
                    break
                interrupted = True
                with contextlib.suppress(OSError):
                    self.journal.record(
                        "scheduler",
                        "abort_interrupt_ignored",
                        note="the abort runs to its end: every device is still made safe",
                    )
        confirmed = job.result() if not job.cancelled() else {}
        self.progress.abort_confirmations = dict(confirmed)
        return confirmed, interrupted

    async def _abort_devices(self, reason: str) -> dict[str, str]:
        wall0 = time.perf_counter()
        report = await abort_all(self.devices, time_scale=self.clock.time_scale)
        await self._final_injector_report()
        since = None if self._detected_s is None else self.clock.now() - self._detected_s
        with contextlib.suppress(OSError):  # a full disk must not cut the abort short
            self.journal.record(
                "scheduler",
                "abort",
                reason=reason,
                confirmed=report.confirmed,
                duration_s=round(report.duration_s, 6),
                wall_duration_s=round(time.perf_counter() - wall0, 6),
                since_detection_s=None if since is None else round(since, 6),
                contrast_delivered_ml=round(self._delivered_ml(), 3),
            )
        for r in self.results:
            if r.status in ("pending", "running"):
                r.status = "skipped" if r.status == "pending" else "failed"
                r.detail = r.detail or f"exam ended: {reason}"
        return report.confirmed

    async def _final_injector_report(self) -> None:
        """The injector's own account of what it delivered, after it was stopped."""
        if self._anchor is None and self.progress.contrast_ml <= 0:
            return  # nothing was started: nothing to account for
        bound = abort_step_bound_s(self.devices.injector, self.clock.time_scale)
        try:
            async with asyncio.timeout(bound * self.clock.time_scale * 1.1):
                self._injector_status = await self.devices.injector.status(
                    timeout_s=ABORT_STEP_TIMEOUT_S * self.clock.time_scale
                )
        except (TimeoutError, DeviceError):
            pass  # its last report (progress.contrast_ml) stands

    def _delivered_ml(self) -> float:
        if self._injector_status is not None:
            return max(self._injector_status.delivered_ml, 0.0)
        return self.progress.contrast_ml

    def _close(
        self,
        state: RunState,
        reason: str,
        started: float,
        confirmations: dict[str, str],
        unsubscribe: list[Callable[[], None]],
    ) -> ExamResult:
        for u in unsubscribe:
            u()
        self._pause_wall.close()
        self.progress.abort_confirmations = confirmations or None
        ended = self.clock.now()
        self.progress.current_step = ""
        with contextlib.suppress(OSError):  # the reserve makes room; a dead disk must not hide
            self._finish_record(state, reason, ended - started)  # the result from the caller
        return ExamResult(
            state.value,
            reason,
            self.results,
            self.records,
            self._anchor,
            self._injector_status,
            started,
            ended,
            confirmations,
            self._prior,
            self._faults,
            self.dose.fluoro_s,
            self._delivered_ml(),
        )

    def _finish_record(self, state: RunState, reason: str, duration_s: float) -> None:
        try:
            if self.machine.state is not state:
                self.machine.go(state, reason)
            self.journal.record(
                "scheduler",
                "exam_finished",
                state=state.value,
                reason=reason,
                images=len(self.records) + len(self._prior),
                duration_s=round(duration_s, 3),
                contrast_delivered_ml=round(self._delivered_ml(), 3),
            )
        finally:
            self.journal.close()


def _clean(status: InjectorStatus) -> bool:
    """Idle with nothing delivered and no start: ready for this exam's own program."""
    return (
        status.state is InjectorState.IDLE
        and status.started_at_s is None
        and status.delivered_ml <= 1e-6
    )


def _fault_names(status: InjectorStatus) -> str:
    return ",".join(f.value for f in status.faults) or "fault"


def _as_acquired(
    kind: str, payload: Any, step: CaptureStep | FluoroStep | TomoStep
) -> list[tuple[tuple[Frame, ...], float | None, TomoInfo | None]]:
    if kind == "fluoro":
        run: FluoroRun = payload
        return [(run.frames, run.pulse_rate_hz, None)]
    if kind == "tomo":
        series: TomoSeries = payload
        sweep_s = series.ended_at_s - series.started_at_s
        return [
            ((layer,), None, TomoInfo(height, series.sweep_deg, series.projections, sweep_s))
            for layer, height in zip(series.layers, series.heights_mm, strict=True)
        ]
    frame: Frame = payload
    return [((frame,), None, None)]


def _effective_policy(room: Room, protocol: Protocol) -> FaultPolicy:
    if protocol.faults is None:
        return room.faults
    return room.faults.model_copy(update=protocol.faults.model_dump(exclude_unset=True))


def _exam_json(exam: ExamInfo) -> dict[str, Any]:
    data = dataclasses.asdict(exam)
    data["study_datetime"] = exam.study_datetime.isoformat()
    birth = exam.patient.birth_date
    data["patient"]["birth_date"] = None if birth is None else birth.isoformat()
    return data


def exam_from_json(data: dict[str, Any]) -> ExamInfo:
    patient = dict(data["patient"])
    birth = patient.get("birth_date")
    patient["birth_date"] = None if birth is None else dt.date.fromisoformat(birth)
    return ExamInfo(
        **{
            **data,
            "study_datetime": dt.datetime.fromisoformat(data["study_datetime"]),
            "patient": PatientInfo(**patient),
        }
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
