"""What the in-process simulated room keeps across a controller crash.

A real room keeps running while the controlling process restarts: the injector finishes its
program, the patient's kidneys go on filtering, the detector keeps its last images. The
in-process simulator lives *inside* that process, so it persists itself instead:

* ``room-state.json`` — the whole simulated room (patient kinetics, bladder, position,
  compression; injector program, plan and delivered volume, and its since-reset counters:
  earlier arms' volume and starts, whether this arm was started, the last program loaded;
  table and C-arm state), written
  atomically *before* the device announces any fact (armed, injection started, exposure,
  motion complete, …) and after each operator action, so the state on disk is never behind
  the journal's record of device facts;
* ``acquisition-NNN.json`` + ``acquisition-NNN.npz`` — every acquisition result, written
  before the acquisition is announced: the detector's image memory, from which a restarted
  controller recovers an image whose DICOM file it never got to write. Plain data only
  (hardware_sim/acquisitions.py): nothing in the exam folder is unpickled, so no file there
  can run code; a file that is not exactly what the simulator wrote is skipped with a
  logged reason.

:func:`restore_room` rebuilds the room from the state, shifting its absolute loop times by
``shift_s`` (0 when the resumed virtual clock continues the original loop time).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers import (
    CollimationField,
    DeviceEvent,
    FluoroRun,
    FocalSpot,
    Frame,
    InjectionPhase,
    InjectionProgram,
    InjectorFault,
    InjectorState,
    PositionerPose,
    TablePosition,
    Technique,
    TomoSeries,
)

from .acquisitions import (
    AcquisitionFileError,
    acquisition_files,
    atomic_write,
    load_acquisition,
    next_index,
    save_acquisition,
)
from .faults import FaultInjector
from .injector import _Segment
from .physics import ContrastKinetics

if TYPE_CHECKING:
    from .room import SimRoom

log = logging.getLogger(__name__)

STATE_FILE = "room-state.json"
#: device events that change what the room *is*; the state is saved before they are announced
FACT_KINDS = frozenset(
    {
        "armed",
        "disarmed",
        "start_acknowledged",
        "injection_started",
        "held",
        "resumed",
        "completed",
        "stopped",
        "faulted",
        "fault_reported",
        "exposure",
        "fluoro_started",
        "fluoro_ended",
        "tomo_started",
        "tomo_ended",
        "frames_dropped",
        "generator_fault",
        "motion_started",
        "motion_complete",
        "motion_stopped",
        "stalled",
        "positioner_in_position",
        "technique_set",
        "collimation_set",
    }
)


class RoomPersistence:
    """Saves a :class:`SimRoom` into a directory and finds its acquisitions again."""

    def __init__(self, room: SimRoom) -> None:
        self._room = room
        self.directory: Path | None = None
        self._next = 1
        #: files :meth:`recover_acquisitions` would not load, with why (also logged)
        self.refused: list[tuple[Path, str]] = []

    def persist_to(self, directory: Path) -> None:
        """Start saving into ``directory`` (the scheduler passes a folder of the exam dir)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._next = next_index(directory)
        room = self._room
        for device in (room.injector, room.carm, room.table):
            publish = device._publish

            def saving(
                event: DeviceEvent, publish: Callable[[DeviceEvent], None] = publish
            ) -> None:
                if event.kind in FACT_KINDS:
                    self.save()
                publish(event)

            setattr(device, "_publish", saving)  # noqa: B010 - instance override
        room.carm.on_acquired = self._save_acquisition
        self.save()

    def save(self) -> None:
        if self.directory is None:
            return
        state = snapshot_room(self._room)
        atomic_write(self.directory / STATE_FILE, json.dumps(state).encode())

    def _save_acquisition(self, kind: str, result: object) -> None:
        if self.directory is None:
            return
        assert isinstance(result, Frame | FluoroRun | TomoSeries)
        save_acquisition(self.directory, self._next, kind, result)
        self._next += 1

    def recover_acquisitions(self, since_s: float) -> list[tuple[str, Any]]:
        """Acquisitions the detector holds that began at or after loop time ``since_s``.

        Only files the simulator wrote are read (JSON and NPZ, ``allow_pickle=False``); any
        other ``acquisition-*`` file, or one that fails its checks, is skipped with a logged
        reason (:attr:`refused`), never loaded and never fatal.
        """
        if self.directory is None:
            return []
        files, refused = acquisition_files(self.directory)
        found: list[tuple[str, Any]] = []
        for _index, path in files:
            try:
                stored = load_acquisition(path)
            except AcquisitionFileError as exc:
                refused.append((path, str(exc)))
                continue
            result = stored.result
            t = result.acquired_at_s if isinstance(result, Frame) else result.started_at_s
            if t >= since_s - 1e-6:
                found.append((stored.kind, result))
        for path, reason in refused:
            log.warning("simulator state: %s skipped: %s", path, reason)
        self.refused = refused
        return found


# -- snapshot / restore ------------------------------------------------------------------------


def _technique(t: Technique | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "kv": t.kv,
        "ma": t.ma,
        "exposure_ms": t.exposure_ms,
        "focal_spot": t.focal_spot.value,
        "filtration_mm_al": t.filtration_mm_al,
        "filtration_mm_cu": t.filtration_mm_cu,
    }


def _pos(p: TablePosition) -> dict[str, float]:
    return {
        "longitudinal_mm": p.longitudinal_mm,
        "lateral_mm": p.lateral_mm,
        "height_mm": p.height_mm,
        "tilt_deg": p.tilt_deg,
    }


def _program(p: InjectionProgram | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "phases": [[ph.flow_ml_s, ph.volume_ml, ph.delay_s] for ph in p.phases],
        "pressure_limit_kpa": p.pressure_limit_kpa,
        "rise_time_s": p.rise_time_s,
        "concentration_mg_ml": p.concentration_mg_ml,
    }


def _program_from(p: dict[str, Any] | None) -> InjectionProgram | None:
    if p is None:
        return None
    return InjectionProgram(
        phases=tuple(InjectionPhase(f, v, d) for f, v, d in p["phases"]),
        pressure_limit_kpa=p["pressure_limit_kpa"],
        rise_time_s=p["rise_time_s"],
        concentration_mg_ml=p["concentration_mg_ml"],
    )


def snapshot_room(room: SimRoom) -> dict[str, Any]:
    now = room.clock.now()
    patient, inj, carm, table = room.patient, room.injector, room.carm, room.table
    if inj._state is InjectorState.INJECTING:
        inj._sync(now)
    return {
        "t_s": now,
        "wall": room.clock.wall_at(now).isoformat(),
        "patient": {
            "t0_s": patient._t0,
            "position": patient.position,
            "compression": patient.compression,
            "kinetics": patient.kinetics.snapshot(),
        },
        "injector": {
            "state": inj._state.value,
            "program": _program(inj._program),
            "segments": [[g.t0, g.t1, g.f0, g.f1, g.phase] for g in inj._segments],
            "delivered_before_ml": inj._delivered_before_ml,
            "delivered_per_phase": inj._delivered_per_phase,
            "delivered_ml": inj._delivered_ml,
            "pressure_kpa": inj._pressure_kpa,
            "flow_ml_s": inj._flow,
            "phase": inj._phase,
            "started_at_s": inj._started_at,
            "ended_at_s": inj._ended_at,
            "faults": [f.value for f in inj._faults],
            "last_tick_s": inj._last_tick,
            # the since-reset counters: a restored injector goes on counting earlier arms
            "total_before_ml": inj._total_before_ml,
            "starts_before": inj._starts_before,
            "arm_started": inj._arm_started,
            "last_program": _program(inj._last_program),
        },
        "carm": {
            "technique": _technique(carm._technique),
            "pose": [
                carm._pose.primary_angle_deg,
                carm._pose.secondary_angle_deg,
                carm._pose.sid_mm,
            ],
            "collimation": [carm._collimation.width_mm, carm._collimation.height_mm],
            "fluoro_time_s": carm._fluoro_time_s,
            "cum_rak_mgy": carm._cum_rak_mgy,
            "cum_dap_gy_cm2": carm._cum_dap,
            # armed fault effects still to come (fault injection)
            "generator_faults_pending": carm._generator_faults_pending,
            "frames_to_drop": carm._frames_to_drop,
        },
        "table": {
            "position": _pos(table.position_at(now)),
            "completed_at_s": table._completed_at,
            "faults": list(table.faults),
            "stall_next": table._stall_next,
        },
        # which --fault specs fired: a restored room never fires them again
        "fault_injection": None if room.faults is None else room.faults.snapshot(),
    }


def restore_room(room: SimRoom, state: dict[str, Any], shift_s: float = 0.0) -> None:
    """Put ``room`` back as ``state`` left it; absolute loop times move by ``shift_s``."""

    def t(x: float | None) -> float | None:
        return None if x is None else float(x) + shift_s

    p = state["patient"]
    patient = room.patient
    patient._t0 = float(p["t0_s"]) + shift_s
    patient.position = str(p["position"])
    patient.compression = bool(p["compression"])
    patient.kinetics = ContrastKinetics.restore(patient.kinetics.params, p["kinetics"])

    c = state["carm"]
    carm = room.carm
    tech = c["technique"]
    carm._technique = (
        None
        if tech is None
        else Technique(
            kv=tech["kv"],
            ma=tech["ma"],
            exposure_ms=tech["exposure_ms"],
            focal_spot=FocalSpot(tech["focal_spot"]),
            filtration_mm_al=tech["filtration_mm_al"],
            filtration_mm_cu=tech["filtration_mm_cu"],
        )
    )
    primary, secondary, sid = c["pose"]
    carm._pose = PositionerPose(
        primary_angle_deg=primary, secondary_angle_deg=secondary, sid_mm=sid
    )
    carm._collimation = CollimationField(*c["collimation"])
    carm._fluoro_time_s = float(c["fluoro_time_s"])
    carm._cum_rak_mgy = float(c["cum_rak_mgy"])
    carm._cum_dap = float(c["cum_dap_gy_cm2"])
    carm._generator_faults_pending = int(c.get("generator_faults_pending", 0))
    carm._frames_to_drop = int(c.get("frames_to_drop", 0))

    tb = state["table"]
    room.table.place(TablePosition(**tb["position"]))
    room.table._completed_at = t(tb["completed_at_s"])
    room.table.faults = tuple(tb["faults"])
    room.table._stall_next = bool(tb.get("stall_next", False))

    record = state.get("fault_injection")
    if record is not None:
        room.faults = FaultInjector(room)
        room.faults.restore(record, shift_s)

    i = state["injector"]
    inj = room.injector
    program = _program_from(i["program"])
    if program is not None:
        inj._program = program
    inj._state = InjectorState(i["state"])
    inj._segments = [
        _Segment(float(a) + shift_s, float(b) + shift_s, f0, f1, ph)
        for a, b, f0, f1, ph in i["segments"]
    ]
    inj._delivered_before_ml = float(i["delivered_before_ml"])
    inj._delivered_per_phase = [float(v) for v in i["delivered_per_phase"]]
    inj._delivered_ml = float(i["delivered_ml"])
    inj._pressure_kpa = float(i["pressure_kpa"])
    inj._flow = float(i["flow_ml_s"])
    inj._phase = i["phase"]
    inj._started_at = t(i["started_at_s"])
    inj._ended_at = t(i["ended_at_s"])
    inj._faults = tuple(InjectorFault(f) for f in i["faults"])
    inj._last_tick = float(i["last_tick_s"]) + shift_s
    # A state saved before the counters were kept: this arm's start is inferred from its
    # state, and nothing is known of earlier arms.
    inj._total_before_ml = float(i.get("total_before_ml", 0.0))
    inj._starts_before = int(i.get("starts_before", 0))
    inj._arm_started = bool(
        i.get(
            "arm_started",
            inj._started_at is not None
            or inj._state in (InjectorState.INJECTING, InjectorState.HOLDING),
        )
    )
    last = i.get("last_program", i["program"])
    inj._last_program = _program_from(last) if last is not None else inj._program
    if inj._started_at is not None:
        inj._started.set()
    ended = (InjectorState.COMPLETED, InjectorState.STOPPED, InjectorState.FAULTED)
    if inj._state in ended and (inj._started_at is not None or inj._ended_at is not None):
        inj._finished.set()
    if inj._state in (InjectorState.INJECTING, InjectorState.HOLDING):
        # The injector ran on while the controller was away: continue its program.
        inj._task = asyncio.create_task(inj._run(max(inj._last_tick, room.clock.now())))
