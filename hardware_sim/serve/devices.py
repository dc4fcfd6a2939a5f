"""Wire services for the simulated C-arm, detector, table, injector and patient effects.

A command beyond a device's own hard limits (:mod:`hardware_sim.limits`) is refused with an
INTERLOCK reply (``fault: device_limit``, ``limit``, ``value``, ``bound``, ``unit`` and a
``message`` naming the limit) before anything is accepted; a limit met while an operation
runs ends it with an ``op.failed`` event carrying the same fields. Every service refuses this
way (``_service.error_fields``); the reference drivers raise
:class:`~drivers.errors.DeviceLimitExceeded`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from drivers import (
    CArm,
    FluoroRequest,
    Frame,
    Injector,
    Table,
    TablePosition,
    Technique,
    TomoRequest,
)
from drivers.backends import OperatorEffects
from drivers.carm import TRIGGER_PAST, TRIGGER_SYNC
from drivers.errors import DeviceFault, DeviceStateError
from drivers.remote._fields import (
    Fields,
    capabilities_fields,
    carm_status_fields,
    collimation_fields,
    collimation_from,
    dose_fields,
    fluoro_from,
    injector_status_fields,
    integer,
    opt_num,
    pose_fields,
    pose_from,
    position_from,
    program_from,
    table_status_fields,
    technique_fields,
    technique_from,
    text,
    tomo_from,
)
from drivers.wire import Scalar

from ._service import Service


class BulkSender(Protocol):
    async def send_bulk(self, data: bytes) -> int: ...


@runtime_checkable
class SelfLimiting(Protocol):
    """A C-arm that can say, before accepting it, whether an irradiation is within its
    own limits (the simulated one does; a contract-only C-arm is checked when it runs)."""

    def check_request(
        self, operation: str, request: Technique | FluoroRequest | TomoRequest
    ) -> None: ...


@runtime_checkable
class HostWatch(Protocol):
    """The part of the device endpoint an armed exposure asks before it fires."""

    def controller_quiet_s(self) -> float: ...


@runtime_checkable
class Guarded(Protocol):
    """A C-arm whose armed exposure asks a guard before it fires (the simulated one)."""

    fire_guard: Callable[[], str | None] | None


#: An armed exposure fires only if the controlling host was heard this recently (wall s):
#: 2.5 heartbeat periods, well inside the 1 s loss bound, so a link lost before the time point
#: leaves nothing to fire even before the device enters SAFE (which disarms it too).
ARMED_HOST_SILENCE_S = 0.5
#: How far ahead a timed exposure may be armed (wall s): an armed generator is a standing
#: order; the scheduler sends it a few hundred milliseconds before the time point.
MAX_ARM_AHEAD_S = 5.0


class CArmService(Service):
    """Generator, positioner and collimator; frames leave through the detector's bulk link.

    ``expose`` with ``at_t_s`` (device clock) and ``sync_s`` (the host's clock-offset error
    bound) is a timed exposure: refused at once (FAULT ``trigger_past`` / ``trigger_sync``) when
    the time point is too close or past, or the host's sync is missing or worse than the
    C-arm's ``max_sync_s``; otherwise armed, fired by the C-arm's own timer, disarmed by
    ``beam_off`` or a host loss, and not fired if the host was silent for
    :data:`ARMED_HOST_SILENCE_S` when the time came.
    """

    def __init__(
        self,
        carm: CArm,
        detector: BulkSender,
        now: Callable[[], float],
        time_scale: float = 1.0,
    ) -> None:
        super().__init__(carm.name, now)
        self._carm = carm
        self._detector = detector
        self._scale = time_scale
        #: the last irradiation accepted, so a host unsure of its request can ask
        self._last_op_id: int | None = None
        if isinstance(carm, Guarded):
            carm.fire_guard = self._host_heard

    def _host_heard(self) -> str | None:
        watch = self._sink
        if not isinstance(watch, HostWatch):
            return None
        quiet = watch.controller_quiet_s()
        if quiet <= ARMED_HOST_SILENCE_S:
            return None
        return f"not fired: the controlling host was silent for {quiet:.2f} s"

    async def cmd_capabilities(self, f: Mapping[str, Scalar]) -> Fields:
        return capabilities_fields(await self._carm.capabilities())

    async def cmd_status(self, f: Mapping[str, Scalar]) -> Fields:
        return carm_status_fields(await self._carm.status()) | {"last_op_id": self._last_op_id}

    async def cmd_set_technique(self, f: Mapping[str, Scalar]) -> Fields:
        await self._carm.set_technique(technique_from(f))
        return {}

    async def cmd_move_positioner(self, f: Mapping[str, Scalar]) -> Fields:
        pose = pose_from(f)
        self.operation(f, self._done(self._carm.move_positioner(pose)))
        return {}

    async def cmd_set_collimation(self, f: Mapping[str, Scalar]) -> Fields:
        field = collimation_from(f)
        self.operation(f, self._done(self._carm.set_collimation(field)))
        return {}

    async def cmd_expose(self, f: Mapping[str, Scalar]) -> Fields:
        technique = (await self._carm.status()).technique
        if technique is not None:
            self._check("expose", technique)
        at = opt_num(f, "at_t_s")
        if at is not None:
            await self._check_timed(at, opt_num(f, "sync_s"))
        self._accept(f)
        self.operation(f, self._expose(integer(f, "op_id"), at))
        return {} if at is None else {"armed_t_s": at}

    async def cmd_fluoro(self, f: Mapping[str, Scalar]) -> Fields:
        request = fluoro_from(f)
        self._check("fluoro", request)
        self._accept(f)
        self.operation(f, self._fluoro(integer(f, "op_id"), request))
        return {}

    async def cmd_tomo(self, f: Mapping[str, Scalar]) -> Fields:
        request = tomo_from(f)
        self._check("tomosynthesis", request)
        self._accept(f)
        self.operation(f, self._tomo(integer(f, "op_id"), request))
        return {}

    async def cmd_beam_off(self, f: Mapping[str, Scalar]) -> Fields:
        armed = (await self._carm.status()).armed
        await self._carm.beam_off()
        # the host's confirmation that an armed exposure is gone (its op.failed follows)
        return {"disarmed": armed and not (await self._carm.status()).armed}

    async def safe_state(self) -> None:
        await self._carm.beam_off()

    # -- internals ---------------------------------------------------------------------------
    async def _check_timed(self, at: float, sync_s: float | None) -> None:
        caps = await self._carm.capabilities()
        if not caps.timed_trigger:
            raise DeviceStateError(self.name, "expose", "this C-arm has no timed trigger")
        if sync_s is None or sync_s > caps.max_sync_s:
            got = "none" if sync_s is None else f"±{sync_s * 1000:.2f} ms"
            raise DeviceFault(
                self.name,
                "expose",
                TRIGGER_SYNC,
                f"clock sync {got} is worse than ±{caps.max_sync_s * 1000:g} ms: not armed",
            )
        lead = at - caps.exposure_latency_s - self._now()
        if lead < 0:
            raise DeviceFault(
                self.name,
                "expose",
                TRIGGER_PAST,
                f"time point {-lead * 1000:.1f} ms too close or past: not armed",
            )
        if lead > MAX_ARM_AHEAD_S * self._scale:
            raise ValueError(f"at_t_s is {lead:.1f} s ahead; at most {MAX_ARM_AHEAD_S:g} s")

    def _check(self, operation: str, request: Technique | FluoroRequest | TomoRequest) -> None:
        """Refuse now (INTERLOCK) what the C-arm would refuse once the operation ran."""
        if isinstance(self._carm, SelfLimiting):
            self._carm.check_request(operation, request)

    def _accept(self, f: Mapping[str, Scalar]) -> None:
        self._last_op_id = integer(f, "op_id")

    @staticmethod
    async def _done(aw: Awaitable[None]) -> Fields:
        await aw
        return {}

    async def _send_frame(self, op_id: int, index: int, frame: Frame) -> None:
        pixels = np.ascontiguousarray(frame.pixels, dtype="<u2")
        transfer_id = await self._detector.send_bulk(pixels.tobytes())
        rows, cols = pixels.shape
        self.emit(
            "frame",
            {
                "op_id": op_id,
                "index": index,
                "transfer_id": transfer_id,
                "rows": rows,
                "cols": cols,
                "bits_stored": frame.bits_stored,
                "pixel_spacing_mm": frame.pixel_spacing_mm,
                "acquired_t_s": frame.acquired_at_s,
            }
            | technique_fields(frame.technique)
            | pose_fields(frame.pose)
            | collimation_fields(frame.collimation)
            | dose_fields(frame.dose),
        )

    async def _expose(self, op_id: int, at: float | None) -> Fields:
        frame = await self._carm.expose(at_s=at)
        await self._send_frame(op_id, 0, frame)
        return {"frames": 1}

    async def _fluoro(self, op_id: int, request: FluoroRequest) -> Fields:
        run = await self._carm.fluoro(request)
        for i, frame in enumerate(run.frames):
            await self._send_frame(op_id, i, frame)
        return {
            "frames": len(run.frames),
            "started_t_s": run.started_at_s,
            "ended_t_s": run.ended_at_s,
        }

    async def _tomo(self, op_id: int, request: TomoRequest) -> Fields:
        series = await self._carm.tomosynthesis(request)
        for i, frame in enumerate(series.layers):
            await self._send_frame(op_id, i, frame)
        heights: Fields = {f"layer{i}_height_mm": h for i, h in enumerate(series.heights_mm, 1)}
        return {
            "frames": len(series.layers),
            "started_t_s": series.started_at_s,
            "ended_t_s": series.ended_at_s,
        } | heights


class TableService(Service):
    def __init__(self, table: Table, now: Callable[[], float]) -> None:
        super().__init__(table.name, now)
        self._table = table

    async def cmd_status(self, f: Mapping[str, Scalar]) -> Fields:
        return table_status_fields(await self._table.status())

    async def cmd_move(self, f: Mapping[str, Scalar]) -> Fields:
        target = position_from(f)
        self.operation(f, self._move(target))
        return {}

    async def _move(self, target: TablePosition) -> Fields:
        status = await self._table.move_to(target)
        return table_status_fields(status)

    async def cmd_stop(self, f: Mapping[str, Scalar]) -> Fields:
        await self._table.stop()
        return {}

    async def safe_state(self) -> None:
        await self._table.stop()


class InjectorService(Service):
    periodic_events = frozenset({"status"})

    def __init__(self, injector: Injector, now: Callable[[], float]) -> None:
        super().__init__(injector.name, now)
        self._injector = injector

    async def cmd_status(self, f: Mapping[str, Scalar]) -> Fields:
        status = await self._injector.status()
        return injector_status_fields(status)

    async def cmd_arm(self, f: Mapping[str, Scalar]) -> Fields:
        await self._injector.arm(program_from(f))
        return {}

    async def cmd_disarm(self, f: Mapping[str, Scalar]) -> Fields:
        await self._injector.disarm()
        return {}

    async def cmd_start(self, f: Mapping[str, Scalar]) -> Fields:
        status = await self._injector.start()
        return injector_status_fields(status)

    async def cmd_hold(self, f: Mapping[str, Scalar]) -> Fields:
        await self._injector.hold()
        return {}

    async def cmd_resume(self, f: Mapping[str, Scalar]) -> Fields:
        await self._injector.resume()
        return {}

    async def cmd_stop(self, f: Mapping[str, Scalar]) -> Fields:
        await self._injector.stop()
        return {}

    async def safe_state(self) -> None:
        await self._injector.stop()


class EffectsService(Service):
    """The simulated patient's side of the technologist's hands."""

    def __init__(self, name: str, effects: OperatorEffects, now: Callable[[], float]) -> None:
        super().__init__(name, now)
        self._effects = effects

    async def cmd_apply(self, f: Mapping[str, Scalar]) -> Fields:
        position = f.get("position")
        await self._effects.apply(
            text(f, "action"), position if isinstance(position, str) else None
        )
        return {}

    async def cmd_contrast(self, f: Mapping[str, Scalar]) -> Fields:
        """The patient's iodine per compartment (mg/mL) now: for the console's curves."""
        probe = getattr(self._effects, "contrast_mg_ml", None)
        if probe is None:
            return {}
        return {name: round(float(v), 6) for name, v in (await probe()).items()}
