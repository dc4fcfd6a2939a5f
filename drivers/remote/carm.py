"""Reference C-arm driver: control over one link (serial), images over another (USB bulk).

Exposure, fluoroscopy and tomosynthesis are fire-once: the request carries an ``op_id`` and is
never re-sent; if its outcome is unknown the driver asks the C-arm which operation it last
accepted and either keeps waiting for that operation's end or raises
:class:`AmbiguousCommand`. A command beyond the C-arm's own limits (a wire fault
``device_limit``, in the reply or the operation's ``op.failed`` event) raises
:class:`DeviceLimitExceeded` naming the limit, as the in-process C-arm does. Each frame is
announced by a ``frame`` event on the control link naming a bulk transfer on the detector
link; the driver fetches it while the next one is made.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import numpy as np

from ..carm import (
    TRIGGER_SYNC,
    CArm,
    CArmCapabilities,
    CArmStatus,
    CollimationField,
    FluoroRequest,
    FluoroRun,
    Frame,
    PositionerPose,
    Technique,
    TomoRequest,
    TomoSeries,
)
from ..errors import (
    AmbiguousCommand,
    CommandRejected,
    DeviceError,
    DeviceFault,
)
from ..events import DeviceEvent
from ..wire import Scalar
from ._base import RemoteDevice
from ._channel import Channel
from ._fields import (
    capabilities_from,
    carm_status_from,
    collimation_fields,
    collimation_from,
    dose_from,
    fluoro_fields,
    integer,
    num,
    pose_fields,
    pose_from,
    technique_fields,
    technique_from,
    tomo_fields,
)
from ._ops import typed_faults

#: A frame's pixels must follow its announcement within this (wall) time on a working link.
FRAME_FETCH_TIMEOUT_S = 5.0
#: A timed exposure re-measures the clock offset (``link.ping``) when its best sample is older
#: than this (wall s) or its error bound exceeds half the C-arm's ``max_sync_s``.
SYNC_REFRESH_S = 5.0


class RemoteCArm(RemoteDevice, CArm):
    _internal_events = frozenset({"frame"})

    def __init__(self, name: str, control: Channel, detector: Channel) -> None:
        CArm.__init__(self, name)
        self._attach(control)
        self._detector = detector
        # The image link is the C-arm's too: what its session layer drops is this device's.
        on_security = getattr(detector, "on_security", None)
        if on_security is not None:
            self._detach.append(on_security(self._on_security))
        self._fetches: dict[int, list[asyncio.Task[Frame]]] = {}
        self._technique: Technique | None = None
        self._caps: CArmCapabilities | None = None
        self._disarming: set[asyncio.Task[None]] = set()

    def _on_device_event(self, name: str, fields: Mapping[str, Scalar], host_time_s: float) -> None:
        if name != "frame":
            return
        op_id = fields.get("op_id")
        if isinstance(op_id, int) and op_id in self._fetches:
            self._fetches[op_id].append(asyncio.create_task(self._fetch(dict(fields))))

    async def _fetch(self, f: dict[str, Scalar]) -> Frame:
        data = await self._detector.bulk(integer(f, "transfer_id"), timeout_s=FRAME_FETCH_TIMEOUT_S)
        rows, cols = integer(f, "rows"), integer(f, "cols")
        if len(data) != rows * cols * 2:
            raise DeviceError(
                self.name, "frame", f"image of {len(data)} bytes is not {rows}x{cols} uint16"
            )
        pixels = np.frombuffer(data, dtype="<u2").reshape(rows, cols).astype(np.uint16)
        return Frame(
            pixels=pixels,
            pixel_spacing_mm=num(f, "pixel_spacing_mm"),
            acquired_at_s=self._channel.to_host_time(num(f, "acquired_t_s")),
            technique=technique_from(f),
            pose=pose_from(f),
            collimation=collimation_from(f),
            dose=dose_from(f),
            bits_stored=integer(f, "bits_stored"),
        )

    async def _set_technique(self, technique: Technique) -> None:
        with typed_faults():
            await self._channel.call("set_technique", technique_fields(technique))
        self._technique = technique

    async def _move_positioner(self, pose: PositionerPose) -> None:
        await self._long("move_positioner", pose_fields(pose))

    async def _set_collimation(self, collimation: CollimationField) -> None:
        await self._long("set_collimation", collimation_fields(collimation))

    async def _expose(self) -> Frame:
        _, frames = await self._acquire("expose", {})
        if len(frames) != 1:
            raise DeviceError(self.name, "expose", f"expected one frame, got {len(frames)}")
        return frames[0]

    async def _capabilities(self) -> CArmCapabilities:
        """Asked once; a device that does not know the command declares nothing."""
        if self._caps is None:
            try:
                self._caps = capabilities_from(await self._channel.call("capabilities"))
            except CommandRejected:
                self._caps = CArmCapabilities()
        return self._caps

    async def _timed_trigger_ready(self) -> str | None:
        caps = await self._capabilities()
        if not caps.timed_trigger:
            return "this C-arm has no timed trigger"
        if getattr(self._channel, "to_device_time", None) is None:
            return "this link maps no device clock"
        sync_s = await self._fresh_sync(caps)
        if sync_s > caps.max_sync_s:
            return (
                f"clock offset known to ±{sync_s * 1000:.2f} ms, the C-arm needs "
                f"±{caps.max_sync_s * 1000:g} ms"
            )
        return None

    async def _expose_at(self, at_s: float) -> Frame:
        """``expose`` with ``at_t_s`` (the time point on the device clock) and ``sync_s``.

        The time point is aimed late by the clock offset's error bound (``sync_s``, at most the
        C-arm's ``max_sync_s``), so the beam never comes on before it: its lateness lies within
        [0, 2 × bound]. A sync the C-arm would refuse is refused here (``trigger_sync``) without
        sending anything (:meth:`timed_trigger_ready` re-measures a stale one). Cancelled while
        armed (the step ended), the driver sends ``beam_off`` so nothing stays armed on it.
        """
        why = await self._timed_trigger_ready()
        if why is not None:
            raise DeviceFault(self.name, "expose", TRIGGER_SYNC, f"{why}: not sent")
        to_device = getattr(self._channel, "to_device_time", None)  # optional (vendor channels)
        assert to_device is not None  # checked by _timed_trigger_ready
        sync_s, _ = self._channel_sync()
        # aimed the offset's error bound late: the beam never comes on before the time point
        at_t = to_device(at_s, not_before=True)
        fields: dict[str, Scalar] = {"at_t_s": at_t, "sync_s": sync_s}
        try:
            _, frames = await self._acquire("expose", fields)
        except asyncio.CancelledError:
            task = asyncio.ensure_future(self._disarm())
            self._disarming.add(task)
            task.add_done_callback(self._disarming.discard)
            raise
        if len(frames) != 1:
            raise DeviceError(self.name, "expose", f"expected one frame, got {len(frames)}")
        return frames[0]

    def _channel_sync(self) -> tuple[float, float]:
        """(offset error bound, its age), wall seconds; inf when the channel cannot say."""
        clock_sync = getattr(self._channel, "clock_sync", None)
        if clock_sync is None:
            return float("inf"), float("inf")
        bound, age = clock_sync()
        return float(bound), float(age)

    async def _fresh_sync(self, caps: CArmCapabilities) -> float:
        bound, age = self._channel_sync()
        sync_clock = getattr(self._channel, "sync_clock", None)
        if sync_clock is not None and (bound > caps.max_sync_s / 2 or age > SYNC_REFRESH_S):
            await sync_clock()
            bound, _ = self._channel_sync()
        return bound

    async def _disarm(self) -> None:
        with contextlib.suppress(DeviceError):
            await self._channel.call("beam_off")

    async def _fluoro(self, request: FluoroRequest) -> FluoroRun:
        done, frames = await self._acquire("fluoro", fluoro_fields(request))
        return FluoroRun(
            tuple(frames),
            request.pulse_rate_hz,
            self._channel.to_host_time(num(done, "started_t_s")),
            self._channel.to_host_time(num(done, "ended_t_s")),
        )

    async def _tomosynthesis(self, request: TomoRequest) -> TomoSeries:
        done, layers = await self._acquire("tomo", tomo_fields(request))
        heights = tuple(num(done, f"layer{i}_height_mm") for i in range(1, len(layers) + 1))
        return TomoSeries(
            tuple(layers),
            heights,
            request.sweep_deg,
            request.projections,
            self._channel.to_host_time(num(done, "started_t_s")),
            self._channel.to_host_time(num(done, "ended_t_s")),
        )

    async def _beam_off(self) -> None:
        await self._channel.call("beam_off")

    async def _status(self) -> CArmStatus:
        return carm_status_from(await self._channel.call("status"))

    # -- internals ---------------------------------------------------------------------------
    async def _long(self, command: str, fields: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """An idempotent action that ends with an event (positioner, collimator)."""
        op_id, done = self._ops.begin(command)
        try:
            with typed_faults():
                await self._channel.call(command, {"op_id": op_id, **fields})
            return await done
        finally:
            self._ops.forget(op_id)

    async def _acquire(
        self, command: str, fields: Mapping[str, Scalar]
    ) -> tuple[dict[str, Scalar], list[Frame]]:
        """A fire-once irradiation: never re-sent; frames fetched as they are announced."""
        op_id, done = self._ops.begin(command)
        self._fetches[op_id] = []
        try:
            try:
                with typed_faults():
                    await self._channel.call(command, {"op_id": op_id, **fields}, fire_once=True)
            except AmbiguousCommand:
                # Did the C-arm accept it? It remembers the last operation it started.
                last = (await self._channel.call("status")).get("last_op_id")
                if last != op_id:
                    raise
            result = await done
            # Every announced frame is fetched, even if one fails: keep what arrived.
            fetched = await asyncio.gather(*self._fetches[op_id], return_exceptions=True)
        finally:
            self._ops.forget(op_id)
            pending = self._fetches.pop(op_id, [])
        for task in pending:
            if not task.done():
                task.cancel()
        frames = [f for f in fetched if isinstance(f, Frame)]
        errors = [e for e in fetched if isinstance(e, BaseException)]
        expected = integer(result, "frames")
        if errors and not frames:
            raise errors[0]
        if len(frames) != expected:
            # Partial fluoroscopy: the frames that arrived are the record; say what is missing.
            self._publish_dropped(command, expected, len(frames), errors)
        return result, frames

    def _publish_dropped(
        self, command: str, expected: int, got: int, errors: list[BaseException]
    ) -> None:
        self._publish(
            DeviceEvent(
                self.name,
                "frames_dropped",
                asyncio.get_running_loop().time(),
                {
                    "operation": command,
                    "expected": expected,
                    "received": got,
                    "reason": str(errors[0]) if errors else "not announced",
                },
            )
        )
