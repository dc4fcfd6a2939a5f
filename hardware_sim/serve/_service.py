"""Adapts a simulated device to wire commands: the device side of the reference drivers.

Each service answers REQUESTs with the device's own contract methods, runs long actions as
operations that end in a critical ``op.done``/``op.failed`` event, and forwards the device's
own events (device times as ``*_t_s``, the device clock, which the host maps onto its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from drivers import DeviceEvent, DeviceFault, DeviceStateError
from drivers.errors import DeviceError, DeviceLimitExceeded
from drivers.remote._fields import FieldError, Fields, integer, scalar
from drivers.wire import Scalar, Status

log = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Scalar]], Awaitable[Fields]]


class EventSink(Protocol):
    """The part of the device endpoint a service talks to."""

    async def send_event(
        self, name: str, fields: Mapping[str, Scalar], *, critical: bool = False
    ) -> None: ...


def wire_fields(data: Mapping[str, object]) -> Fields:
    """Device event data as flat wire fields; device times renamed ``*_at_s`` → ``*_t_s``."""
    out: Fields = {}
    for key, value in data.items():
        name = key[: -len("_at_s")] + "_t_s" if key.endswith("_at_s") else key
        out[name] = scalar(value)
    return out


def limit_fields(exc: DeviceLimitExceeded) -> Fields:
    """A refusal beyond the device's own limits, as wire fields (docs/faults.md)."""
    return {
        "error": "interlock",
        "fault": exc.fault,
        "limit": exc.limit,
        "value": exc.value,
        "bound": exc.bound,
        "unit": exc.unit,
        "message": exc.reason,
    }


def error_fields(exc: BaseException) -> tuple[Status, Fields]:
    """The reply status and fields a command's failure stands for (also an ``op.failed``
    event's fields). A command beyond the device's own hard limits is an INTERLOCK naming
    the limit (:func:`limit_fields`), whichever service refused it."""
    if isinstance(exc, DeviceLimitExceeded):
        return Status.INTERLOCK, limit_fields(exc)
    if isinstance(exc, DeviceFault):
        return Status.FAULT, {"error": "fault", "fault": exc.fault, "message": exc.detail}
    if isinstance(exc, DeviceStateError):
        return Status.BAD_STATE, {"error": "state", "message": exc.detail}
    if isinstance(exc, FieldError | ValueError):
        return Status.BAD_ARG, {"error": "argument", "message": str(exc)}
    if isinstance(exc, DeviceError):
        return Status.FAULT, {"error": "fault", "fault": "device", "message": exc.detail}
    return Status.FAULT, {"error": "internal", "message": f"{type(exc).__name__}: {exc}"}


class Service:
    """Base: dispatch ``cmd_<name>`` methods, run operations, forward events in order."""

    #: events sent without acknowledgement (the next one supersedes a lost one)
    periodic_events: frozenset[str] = frozenset()

    def __init__(self, name: str, now: Callable[[], float]) -> None:
        self.name = name
        self._now = now
        self._sink: EventSink | None = None
        self._events: asyncio.Queue[tuple[str, Fields, bool]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, sink: EventSink) -> None:
        self._sink = sink

    async def handle(self, command: str, fields: Mapping[str, Scalar]) -> tuple[Status, Fields]:
        method: Handler | None = getattr(self, "cmd_" + command.replace(".", "_"), None)
        if method is None:
            return Status.UNKNOWN_COMMAND, {"message": f"{self.name} has no command {command!r}"}
        try:
            return Status.OK, await method(fields)
        except Exception as exc:  # every failure becomes a typed reply; the device stays up
            return error_fields(exc)

    def operation(self, fields: Mapping[str, Scalar], work: Awaitable[Fields]) -> None:
        """Run ``work`` after replying; its end is reported as ``op.done``/``op.failed``."""
        op_id = integer(fields, "op_id")

        async def run() -> None:
            try:
                result = await work
            except asyncio.CancelledError:
                self.emit("op.failed", {"op_id": op_id, "error": "state", "message": "cancelled"})
                raise
            except Exception as exc:
                self.emit("op.failed", {"op_id": op_id, **error_fields(exc)[1]})
            else:
                self.emit("op.done", {"op_id": op_id, **result})

        self.spawn(run())

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def emit(self, name: str, fields: Fields, *, critical: bool | None = None) -> None:
        if critical is None:
            critical = name not in self.periodic_events
        self._events.put_nowait((name, {"t_s": self._now(), **fields}, critical))

    def on_device_event(self, event: DeviceEvent) -> None:
        fields = wire_fields(event.data)
        fields.setdefault("t_s", event.device_time_s)
        critical = event.kind not in self.periodic_events
        self._events.put_nowait((event.kind, fields, critical))

    async def forward_events(self) -> None:
        """One task sends events in the order they happened (listeners are synchronous)."""
        while True:
            name, fields, critical = await self._events.get()
            if self._sink is None:
                continue
            try:
                await self._sink.send_event(name, fields, critical=critical)
            except Exception:  # a dead link must not stop the device; the host re-queries
                log.debug("%s: event %s not sent", self.name, name, exc_info=True)

    async def safe_state(self) -> None:
        """Called when the host is lost (heartbeat silence)."""

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
