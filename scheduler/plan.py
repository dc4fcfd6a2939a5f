"""`fluoroctl plan`: the exam rehearsed by the real engine on a simulated room, on virtual time.

The plan is not a model of the run: it *is* a run — the same runner and step handlers, the
room's fault policy, dose limits and scripted operator delays — against the in-process
simulator (or the room's own mock devices), with virtual time, so an hour-long exam takes
seconds. Durations, time points and which films would be missed come from the code that
runs the exam. A room on real links is rehearsed on simulated devices in its place.

Everything the rehearsal writes (journal, images) goes into a temporary folder that is
removed before the plan is returned. Preflight's instant warnings use a separate quick
estimate (:mod:`scheduler.timeline_estimate`), not this. The dose figures are the
simulator's reference air kerma and, per step carried out, an entrance air-kerma estimate
from the technique alone (:mod:`scheduler.dose_estimate`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers import Clock, VirtualTimeEventLoop
from drivers.backends import RoomRequest, backend_for_links

from .dose_estimate import SID_MM, entrance_kerma_mgy, tube_output_ugy_per_mas
from .operator import ScriptedOperator
from .paths import PROJECT_ROOT
from .protocol import CaptureStep, FluoroStep, InjectStep, Protocol, TomoStep
from .room import IN_PROCESS_SCHEMES, Devices, OperatorConfig, Room

if TYPE_CHECKING:  # the engine is imported when a plan is made, not with the CLI
    from .exam import ExamResult, Recorded
    from .weight_dose import WeightedVolume

__all__ = [
    "SID_MM",
    "Plan",
    "PlannedStep",
    "entrance_kerma_mgy",
    "plan_exam",
    "planning_room",
    "rehearse",
    "tube_output_ugy_per_mas",
]

#: the simulated devices a room on real links is rehearsed with
SIM_DEVICES = Devices(carm="sim://carm", table="sim://table", injector="sim://injector")


@dataclass(frozen=True)
class PlannedStep:
    id: str
    label: str
    type: str
    #: how the step ended in the rehearsal: done | late | missed | failed | skipped
    status: str
    detail: str
    #: the protocol's time point (``at``), for timed steps
    planned_after_injection_s: float | None
    #: when the step's command went out (or, for a missed film, when it was given up),
    #: from the exam's start
    start_s: float | None
    #: the same moment from the injection start (the injection step itself: 0)
    after_injection_s: float | None
    #: radiographic exposures (a tomo sweep is one) or fluoroscopy pulses, if carried out
    exposures: int
    #: entrance air kerma estimated from the technique, if carried out
    entrance_mgy: float
    #: reference air kerma the simulator delivered
    reference_air_kerma_mgy: float
    note: str


@dataclass(frozen=True)
class Plan:
    protocol: str
    room: str
    #: completed, or how and why the rehearsal ended early
    state: str
    reason: str
    steps: tuple[PlannedStep, ...]
    duration_s: float
    contrast_ml: float
    iodine_g: float
    exposures: int
    fluoro_s: float
    entrance_mgy: float
    reference_air_kerma_mgy: float
    dap_gy_cm2: float
    images: int
    #: the weight-based bolus as worked out for the rehearsal's patient
    #: (:class:`scheduler.weight_dose.WeightedVolume` as JSON), if the protocol has one
    contrast_by_weight: dict[str, Any] | None = None

    @property
    def problems(self) -> list[PlannedStep]:
        """Steps the rehearsal did not carry out on time."""
        return [s for s in self.steps if s.status not in ("done", "pending")]

    def to_json(self) -> dict[str, Any]:
        """The plan as ``fluoroctl plan --json`` prints it (times in seconds, doses in mGy)."""
        data: dict[str, Any] = _rounded(asdict(self))
        return data


def planning_room(room: Room) -> Room:
    """``room`` as rehearsed: its devices if they live in this process, else the simulator;
    virtual time; its operator delays, answered by a script; no injected faults."""
    in_process = all(
        link.split(":", 1)[0] in IN_PROCESS_SCHEMES
        for link in (room.devices.carm, room.devices.table, room.devices.injector)
    )
    options = dict(room.options) if in_process else {}
    options.pop("faults", None)
    if not in_process and "patient" in room.options:
        options["patient"] = room.options["patient"]
    return room.model_copy(
        update={
            "clock": "virtual",
            "devices": room.devices if in_process else SIM_DEVICES,
            "operator": OperatorConfig(mode="scripted", delays_s=room.operator.delays_s),
            "options": options,
        }
    )


async def plan_exam(
    protocol: Protocol,
    room: Room,
    *,
    patient: str | None = None,
    base_dir: Path = PROJECT_ROOT,
    weight_kg: float | None = None,
) -> Plan:
    """Rehearse ``protocol`` in ``room`` on the running loop (a VirtualTimeEventLoop).

    A weight-based bolus is worked out for ``weight_kg`` (an order's weight), else for the
    simulated patient's weight, and clamped as the run would."""
    from .exam import ExamRunner, RoomInfo
    from .order_exam import identify_exam
    from .weight_dose import weigh

    clock = Clock.for_running_loop()
    if not clock.is_virtual:
        raise RuntimeError("a plan runs on virtual time: use rehearse(), which makes one")
    sim = planning_room(room)
    options: dict[str, Any] = {"patient": patient} if patient else {}
    with tempfile.TemporaryDirectory(prefix="fluoroctl-plan-") as tmp:
        # The rehearsal's own simulated room, opened here: never the room's devices.
        backend = backend_for_links(sim.links)
        devices = await backend(RoomRequest(sim.links, clock, {**sim.options, **options}, base_dir))
        try:
            info = RoomInfo.of(devices)
            weighted = None
            if weight_kg is not None:
                protocol, weighted = weigh(protocol, sim.limits, weight_kg, weight_source="given")
            who = identify_exam(protocol, sim, info, clock.wall_now(), order=None)
            protocol, exam = who.protocol, who.exam
            weighted = weighted or who.weighted
            operator = ScriptedOperator(clock, sim.operator.delays_s)
            runner = ExamRunner(protocol, sim, devices, clock, operator, Path(tmp), exam)
            seen = _Seen()
            runner.bus.subscribe(seen, inline=True)
            try:
                result = await runner.run()
            except Exception:
                # A protocol preflight will refuse may trip the engine (a value a driver
                # rejects): the rehearsal ended there, and the plan says so.
                if runner.result is None:
                    raise
                result = runner.result
        finally:
            await devices.aclose()
    return _plan(protocol, room, result, seen, weighted)


class _Seen:
    """What the plan reads off the rehearsal's events beyond its result."""

    def __init__(self) -> None:
        #: step → when its film was given up (missed before it was fired)
        self.given_up: dict[str, float] = {}
        #: step → reference air kerma its images received
        self.kerma: dict[str, float] = {}

    def __call__(self, recorded: Recorded) -> None:
        from .exam.events import Captured, CaptureMissed

        event, step = recorded.event, recorded.step or ""
        if isinstance(event, CaptureMissed):
            self.given_up.setdefault(step, recorded.t_s)
        elif isinstance(event, Captured):
            self.kerma[step] = self.kerma.get(step, 0.0) + event.reference_air_kerma_mgy


def rehearse(
    protocol: Protocol,
    room: Room,
    *,
    patient: str | None = None,
    base_dir: Path = PROJECT_ROOT,
    weight_kg: float | None = None,
) -> Plan:
    """:func:`plan_exam` on a virtual-time loop of its own (from a worker thread when the
    caller already runs a loop). The rehearsal is deterministic, so the last few plans are
    kept in memory (a second call with equal files costs nothing)."""
    key = _Key(
        protocol.model_dump_json(),
        room.model_dump_json(),
        patient,
        base_dir,
        weight_kg,
        protocol,
        room,
    )
    return _rehearsed(key)


@dataclass(frozen=True)
class _Key:
    """Plans are the same for equal protocol and room files (compared as JSON)."""

    protocol_json: str
    room_json: str
    patient: str | None
    base_dir: Path
    weight_kg: float | None
    protocol: Protocol = field(compare=False, hash=False)
    room: Room = field(compare=False, hash=False)


@functools.lru_cache(maxsize=8)
def _rehearsed(key: _Key) -> Plan:
    def rehearse() -> Plan:
        loop = VirtualTimeEventLoop()
        try:
            planned = plan_exam(
                key.protocol,
                key.room,
                patient=key.patient,
                base_dir=key.base_dir,
                weight_kg=key.weight_kg,
            )
            return loop.run_until_complete(planned)
        finally:
            loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return rehearse()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plan") as pool:
        return pool.submit(rehearse).result()


def _plan(
    protocol: Protocol,
    room: Room,
    result: ExamResult,
    seen: _Seen,
    weighted: WeightedVolume | None = None,
) -> Plan:
    anchor = result.injection_start_s
    steps: list[PlannedStep] = []
    for step, r in zip(protocol.steps, result.steps, strict=True):
        exposures, entrance, note = _estimate(protocol, step)
        if weighted is not None and step.id == weighted.step:
            note = f"{weighted.describe()}; {note}"
        if r.status not in ("done", "late"):  # not carried out: nothing was exposed
            exposures, entrance = 0, 0.0
        t = r.commanded_s if r.commanded_s is not None else seen.given_up.get(r.id)
        at = r.device_s if isinstance(step, InjectStep) and r.device_s is not None else t
        steps.append(
            PlannedStep(
                id=r.id,
                label=r.label,
                type=r.type,
                status=r.status,
                detail=r.detail,
                planned_after_injection_s=r.planned_after_injection_s,
                start_s=None if t is None else t - result.started_s,
                after_injection_s=None if anchor is None or at is None else at - anchor,
                exposures=exposures,
                entrance_mgy=entrance,
                reference_air_kerma_mgy=seen.kerma.get(r.id, 0.0),
                note=note,
            )
        )
    inject = protocol.inject_step
    volume = inject.volume_ml if inject else 0.0
    concentration = protocol.contrast.concentration_mg_ml if protocol.contrast else 0.0
    frames = [f for rec in result.records for f in rec.frames]
    return Plan(
        protocol=protocol.name,
        room=room.name,
        state=result.state,
        reason=result.reason,
        steps=tuple(steps),
        duration_s=result.ended_s - result.started_s,
        contrast_ml=volume,
        iodine_g=volume * concentration / 1000.0,
        exposures=sum(p.exposures for p in steps if p.type in ("capture", "tomo")),
        fluoro_s=result.fluoro_time_s,
        entrance_mgy=sum(p.entrance_mgy for p in steps),
        reference_air_kerma_mgy=sum(f.dose.reference_air_kerma_mgy for f in frames),
        dap_gy_cm2=sum(f.dose.dap_gy_cm2 for f in frames),
        images=len(result.records),
        contrast_by_weight=None if weighted is None else weighted.to_json(),
    )


def _estimate(protocol: Protocol, step: object) -> tuple[int, float, str]:
    """(exposures, entrance air-kerma estimate, note) of a step, from its technique."""
    if isinstance(step, CaptureStep):
        tech = step.technique or protocol.technique
        return 1, entrance_kerma_mgy(tech.kv, tech.mas), ""
    if isinstance(step, TomoStep):
        tech = step.technique or protocol.technique
        note = f"{step.projections} projections, {len(step.layer_heights_mm)} layers"
        return 1, entrance_kerma_mgy(tech.kv, tech.mas), note  # one sweep
    if isinstance(step, FluoroStep):
        t = step.technique
        n = round(step.pulse_rate_hz * step.duration_s)
        return n, n * entrance_kerma_mgy(t.kv, t.ma * t.pulse_ms / 1000), ""
    if isinstance(step, InjectStep):
        seconds = sum(p.volume_ml / p.flow_ml_s for p in step.phases)
        return 0, 0.0, f"{step.volume_ml:g} mL over {seconds:.0f} s"
    return 0, 0.0, str(getattr(step, "action", ""))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
