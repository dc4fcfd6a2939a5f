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
from drivers.remote._fields import (
    Fields,
    carm_status_fields,
    collimation_fields,
    collimation_from,
    dose_fields,
    fluoro_from,
    injector_status_fields,
    integer,
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


class CArmService(Service):
    """Generator, positioner and collimator; frames leave through the detector's bulk link."""

    def __init__(self, carm: CArm, detector: BulkSender, now: Callable[[], float]) -> None:
        super().__init__(carm.name, now)
        self._carm = carm
        self._detector = detector
        #: the last irradiation accepted, so a host unsure of its request can ask
        self._last_op_id: int | None = None

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
        self._accept(f)
        self.operation(f, self._expose(integer(f, "op_id")))
        return {}

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
        await self._carm.beam_off()
        return {}

    async def safe_state(self) -> None:
        await self._carm.beam_off()

    # -- internals ---------------------------------------------------------------------------
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

    async def _expose(self, op_id: int) -> Fields:
        frame = await self._carm.expose()
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
