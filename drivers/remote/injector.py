"""Reference injector driver over the wire protocol.

``start`` is the one fire-once command: it is never re-sent. When its outcome is unknown (no
reply, NAK, link drop) the driver asks the device for its state and reports the injection as
started only if the device says so; otherwise it raises :class:`AmbiguousCommand` and the
scheduler decides. Status arrives as 10 Hz ``status`` events; start, end and faults as critical
events. The device's since-reset counters (``delivered_total_ml``, ``injections_started``)
travel beside the status fields and land in :class:`InjectorStatus`; a program beyond the
device's own limits is refused (INTERLOCK) and raised as :class:`DeviceLimitExceeded`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from ..errors import AmbiguousCommand, DeviceStateError
from ..injector import InjectionProgram, Injector, InjectorState, InjectorStatus
from ..wire import Scalar
from ._base import RemoteDevice
from ._channel import Channel
from ._fields import injector_status_from, program_fields
from ._ops import typed_faults

_ENDED = ("completed", "stopped", "faulted")
_Predicate = Callable[[InjectorStatus], bool]
#: Poll while waiting for a start/end event, in case the event was lost in a link outage.
_POLL_S = 0.5


class RemoteInjector(RemoteDevice, Injector):
    def __init__(self, name: str, channel: Channel) -> None:
        Injector.__init__(self, name)
        self._attach(channel)
        self._started = asyncio.Event()
        self._finished = asyncio.Event()

    def _on_device_event(self, name: str, fields: Mapping[str, Scalar], host_time_s: float) -> None:
        if name == "injection_started":
            self._started.set()
        elif name in _ENDED:
            self._finished.set()

    async def _arm(self, program: InjectionProgram) -> None:
        self._started.clear()
        self._finished.clear()
        with typed_faults():
            await self._channel.call("arm", program_fields(program))

    async def _disarm(self) -> None:
        """The device refuses (DeviceStateError) while injecting or holding; after an ended
        injection it forgets it (IDLE, nothing delivered, no start time, no faults)."""
        await self._channel.call("disarm")
        self._started.clear()
        self._finished.clear()

    async def _start(self) -> InjectorStatus:
        try:
            reply = await self._channel.call("start", fire_once=True)
        except AmbiguousCommand:
            status = await self._status()
            if status.state in (InjectorState.INJECTING, InjectorState.HOLDING) or (
                status.started_at_s is not None
            ):
                return status  # the start took effect; its reported time anchors the exam
            raise
        return self._status_from(reply)

    async def _wait_started(self) -> InjectorStatus:
        return await self._wait_for(self._started, lambda s: s.started_at_s is not None)

    async def _wait_finished(self) -> InjectorStatus:
        return await self._wait_for(self._finished, lambda s: s.state.value in _ENDED)

    async def _wait_for(self, event: asyncio.Event, reached: _Predicate) -> InjectorStatus:
        while True:
            status = await self._status()
            if reached(status):
                return status
            if (
                status.state in (InjectorState.IDLE, InjectorState.ARMED)
                and event is self._finished
            ):
                raise DeviceStateError(
                    self.name, "wait_finished", f"not injecting ({status.state})"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S):
                    await event.wait()

    async def _hold(self) -> None:
        await self._channel.call("hold")

    async def _resume(self) -> None:
        await self._channel.call("resume")

    async def _stop(self) -> None:
        await self._channel.call("stop")

    async def _status(self) -> InjectorStatus:
        return self._status_from(await self._channel.call("status"))

    def _status_from(self, fields: Mapping[str, Scalar]) -> InjectorStatus:
        return injector_status_from(fields, self._channel.to_host_time)
