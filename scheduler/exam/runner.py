"""The exam runner: state machine, pause gate, the walk through the steps, abort and close.

Each step goes to the handler its kind names (:mod:`scheduler.exam.handlers`); everything
that happens is an event on :attr:`ExamRunner.bus`, whose first subscriber is the journal.
Timed steps are anchored to the injector-confirmed injection start and waited for with
absolute deadlines; exposure and injection start are fire-once; every image is on disk
before its ``capture`` line.

:meth:`ExamRunner.run` always ends with every device in its safe state (unless the exam
completed) and the record closed, then returns the result — or re-raises the cancellation
(Ctrl-C) or the bug that ended it, with :attr:`ExamRunner.result` already set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers import Clock, DeviceError, DeviceEvent, DeviceLost, DeviceTimeout
from drivers.backends import DeviceSet

from ..imaging.chain import HostImageChain
from ..journal import ExamEvent, Journal
from ..operator import Operator, Request
from ..protocol import Protocol
from ..records import CaptureRecord, ExamInfo
from ..recovery import RecoveredExam
from ..room import Room
from ..safety import DoseMonitor, InterlockRefused
from ..state import ExamStatus, IllegalTransition, RunState, StateMachine, Transition
from ..storage import StorageFull
from .abort import abort
from .bus import EventBus, Recorded, captures_to, lines_to
from .context import ExamContext, PauseGate, effective_policy
from .events import (
    ControlRefused,
    ExamFinished,
    ExamStarted,
    PausedDuringInjection,
    StateChanged,
    StepDone,
    StepStarted,
)
from .faults import device_lost, on_injector_event, reconcile_contrast
from .handlers import handler_for
from .handlers.inject import watch_injection
from .handlers.operator_films import accept
from .identity import resume_context
from .prepare import prepare
from .progress import ExamProgress
from .recovery import adopt, announce_resume
from .results import FINAL_STATUSES, ExamAborted, ExamFaulted, ExamResult, StepResult
from .room_info import RoomInfo
from .store import DicomStore, ImageStore

#: where a room that persists itself (the in-process simulator) keeps its state
SIM_STATE_DIR = "sim-state"
JOURNAL = "events.jsonl"
#: states in which operator actions are taken
_ACTIVE = frozenset({RunState.PREPARING, RunState.RUNNING, RunState.PAUSED})


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
        store: ImageStore | None = None,
    ) -> None:
        self.protocol, self.room, self.devices, self.clock = protocol, room, devices, clock
        self.out_dir, self.exam, self.recovered = out_dir, exam, recovered
        self.bus = EventBus(clock, start_seq=recovered.last_seq if recovered else 0)
        self.journal = Journal(out_dir / JOURNAL)
        self.bus.subscribe(self._journal_line, durable=True)
        self.ctx = ExamContext(
            protocol=protocol,
            room=room,
            devices=devices,
            clock=clock,
            operator=operator,
            out_dir=out_dir,
            exam=exam,
            bus=self.bus,
            journal=self.journal,
            store=store or DicomStore(exam, out_dir, HostImageChain.for_room(room, devices.carm)),
            info=RoomInfo.of(devices),
            policy=effective_policy(room, protocol),
            gate=PauseGate(clock),
            dose=DoseMonitor(room.dose),
            recovered=recovered,
            results=[StepResult(s.id, s.title, s.type) for s in protocol.steps],
        )
        self._extra_context = context or {}
        self.machine = StateMachine(self._on_transition, clock.now)
        self.progress = progress or ExamProgress(protocol.name)
        self.progress.runner = self
        self.bus.subscribe(self.progress.on_event)
        if on_capture is not None:
            self.bus.subscribe(captures_to(on_capture))
        if on_event is not None:
            self.bus.subscribe(lines_to(on_event))
        #: the finished exam (also when run() ends by re-raising a cancellation or a bug)
        self.result: ExamResult | None = None
        if recovered is not None:
            adopt(self.ctx, recovered)
        self.progress.dose = self.ctx.dose  # the live fluoroscopy time for the display

    # -- public --------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self.machine.state

    @property
    def results(self) -> list[StepResult]:
        return self.ctx.results

    def status(self) -> ExamStatus:
        """A snapshot of where the exam is."""
        ctx = self.ctx
        return ExamStatus(
            state=self.machine.state,
            current_step=ctx.current_step,
            next_step=ctx.next_step or None,
            next_deadline_s=ctx.next_deadline_s,
            injection_start_s=ctx.anchor,
            contrast_delivered_ml=ctx.contrast_ml,
            reference_air_kerma_mgy=ctx.dose.rak_mgy,
            dap_gy_cm2=ctx.dap_gy_cm2,
            fluoro_time_s=ctx.dose.fluoro_s,
            images=ctx.images,
            devices=dict(ctx.health),
            faults=tuple(ctx.faults),
        )

    def pause(self, reason: str = "operator") -> None:
        """Hold new commands (the one in progress completes). Time points never move.

        An injection under way runs on: the injector is physiological time (contrast given
        cannot be held back without reshaping the bolus the timed films are planned around);
        a technologist who wants the flow stopped stops the injector or aborts.

        Raises :class:`IllegalTransition` (journaled as ``control_refused``) unless running.
        """
        self._go(RunState.PAUSED, "pause", reason)
        self.ctx.gate.close()
        if self.ctx.monitor is not None and not self.ctx.monitor.done():
            self.bus.emit(
                PausedDuringInjection(
                    step=self.ctx.current_step, delivered_ml=round(self.ctx.contrast_ml, 3)
                )
            )

    def resume(self, reason: str = "operator") -> None:
        """Let held commands go; films that fell due meanwhile follow ``when_paused``."""
        self._go(RunState.RUNNING, "resume", reason)
        self.ctx.gate.open()

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

    def request(self, request: Request) -> str | None:
        """An operator action (skip, repeat, extra film): None when accepted, else why not
        (:func:`scheduler.exam.handlers.operator_films.accept`)."""
        return accept(self.ctx, request, active=self.state in _ACTIVE)

    async def run(self) -> ExamResult:
        ctx, rec = self.ctx, self.recovered
        started = self.clock.now() if rec is None else rec.started_s
        unsubscribe = [self._listen(d) for d in (ctx.devices.carm, ctx.devices.table)]
        unsubscribe.append(self._listen(ctx.devices.injector))
        unsubscribe.append(ctx.devices.injector.subscribe(self._on_injector_event))
        if rec is None:
            self.bus.emit(
                ExamStarted(
                    protocol=self.protocol.name,
                    room=self.room.name,
                    study_uid=self.exam.study_instance_uid,
                    steps=tuple(s.id for s in self.protocol.steps),
                    context=resume_context(ctx, self._extra_context),
                )
            )
        else:
            announce_resume(ctx, rec)
            # Steps whose images were all found on disk are settled now: the record says so.
            for result in ctx.results:
                record = rec.steps.get(result.id)
                if record is not None and record.settled_on_resume:
                    self._step_done(result)
        self.machine.go(RunState.PREPARING, "resume" if rec else "start")
        if ctx.info.persistence is not None:
            ctx.info.persistence.persist_to(self.out_dir / SIM_STATE_DIR)
        state, reason = RunState.COMPLETED, ""
        interrupted = False
        bug: BaseException | None = None
        try:
            await prepare(ctx)
            self.machine.go(RunState.RUNNING)
            if rec is not None and ctx.anchor is not None:
                # The injection began before the restart: watch it to its end again.
                ctx.monitor = asyncio.create_task(watch_injection(ctx, 600.0))
            ctx.steps_task = asyncio.create_task(self._run_steps())
            await ctx.steps_task
            await self._finish_injection()
            # Paused after the last step: the exam completes once the operator resumes.
            await ctx.gate.wait()
            await reconcile_contrast(ctx)
            if ctx.end is not None:  # a reaction after the last step ends the exam
                state, reason = ctx.end
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
            if ctx.end is not None and (task is None or task.cancelling() == 0):
                state, reason = ctx.end
            else:
                state, reason = RunState.ABORTED, "cancelled by the operator"
                interrupted = True
        except Exception as exc:
            # A bug must still leave every device safe and the record closed, then surface.
            state, reason = RunState.ABORTED, f"internal error: {type(exc).__name__}: {exc}"
            bug = exc
        confirmations: dict[str, str] = {}
        if state is not RunState.COMPLETED:
            confirmations, again = await abort(ctx, reason)
            interrupted = interrupted or again
        self.result = self._close(state, reason, started, confirmations, unsubscribe)
        self.result.contrast_commanded_ml = ctx.contrast.commanded_ml
        self.result.contrast_uncommanded_ml = ctx.contrast.uncommanded_ml
        self.result.interrupted = interrupted
        if bug is not None:
            raise bug
        if interrupted:
            raise asyncio.CancelledError
        return self.result

    # -- steps ---------------------------------------------------------------------------
    async def _run_steps(self) -> None:
        ctx = self.ctx
        for step, result in zip(self.protocol.steps, ctx.results, strict=True):
            if result.status in FINAL_STATUSES:
                continue  # finished before a restart
            ctx.current_step = step.id
            self.bus.emit(StepStarted(step=step.id, title=step.title))
            result.status = "running"
            try:
                await handler_for(step.type)(ctx, step, result)
            except (DeviceLost, DeviceTimeout) as exc:
                await device_lost(ctx, exc, result)
            except InterlockRefused as exc:
                if exc.command not in ("expose", "fluoro", "tomo") or not exc.dose:
                    raise
                result.status, result.detail = "missed", exc.reason
            if result.status == "running":
                result.status = "done"
            self._step_done(result)
        ctx.current_step = None

    def _step_done(self, result: StepResult) -> None:
        self.bus.emit(
            StepDone(
                step=result.id,
                status=result.status,
                detail=result.detail,
                planned_after_injection_s=result.planned_after_injection_s,
                planned_s=result.planned_s,
                commanded_s=result.commanded_s,
                device_s=result.device_s,
                files=tuple(result.files),
            )
        )

    async def _finish_injection(self) -> None:
        if self.ctx.monitor is not None:
            await self.ctx.monitor
        for task in list(self.ctx.side_tasks):
            await task

    # -- events --------------------------------------------------------------------------
    def _journal_line(self, recorded: Recorded) -> None:
        if recorded.seq is not None:
            self.journal.write(recorded.line, fsync=recorded.durable)

    def _listen(self, device: Any) -> Callable[[], None]:
        """Journal what ``device`` reports, tagged with the step running then."""
        role = self.ctx.role_of(device.name)

        def listen(event: DeviceEvent) -> None:
            self.bus.emit_device(event, role, self.ctx.current_step)

        unsubscribe: Callable[[], None] = device.subscribe(listen)
        return unsubscribe

    def _on_injector_event(self, event: DeviceEvent) -> None:
        on_injector_event(self.ctx, event)

    def _on_transition(self, t: Transition) -> None:
        self.bus.emit(
            StateChanged(
                step=self.ctx.current_step,
                from_state=t.source.value,
                to_state=t.target.value,
                reason=t.reason,
            )
        )

    def _go(self, target: RunState, action: str, reason: str) -> None:
        try:
            self.machine.go(target, reason)
        except IllegalTransition as exc:
            self.bus.emit(
                ControlRefused(
                    step=self.ctx.current_step,
                    action=action,
                    state=exc.current.value,
                    reason=exc.reason,
                )
            )
            raise

    # -- the end -------------------------------------------------------------------------
    def _close(
        self,
        state: RunState,
        reason: str,
        started: float,
        confirmations: dict[str, str],
        unsubscribe: list[Callable[[], None]],
    ) -> ExamResult:
        ctx = self.ctx
        for u in unsubscribe:
            u()
        self.progress.abort_confirmations = confirmations or None
        ended = self.clock.now()
        with contextlib.suppress(OSError):  # the reserve makes room; a dead disk must not hide
            self._finish_record(state, reason, ended - started)  # the result from the caller
        self.bus.close()
        return ExamResult(
            state.value,
            reason,
            ctx.results,
            ctx.records,
            ctx.anchor,
            ctx.injector_status,
            started,
            ended,
            confirmations,
            ctx.prior,
            ctx.faults,
            ctx.dose.fluoro_s,
            ctx.delivered_ml(),
        )

    def _finish_record(self, state: RunState, reason: str, duration_s: float) -> None:
        try:
            if self.machine.state is not state:
                self.machine.go(state, reason)
            self.bus.emit(
                ExamFinished(
                    state=state.value,
                    reason=reason,
                    images=self.ctx.images,
                    duration_s=round(duration_s, 3),
                    contrast_delivered_ml=round(self.ctx.delivered_ml(), 3),
                )
            )
        finally:
            self.journal.close()
