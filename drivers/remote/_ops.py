"""Long device actions over the wire: accepted by a REPLY, finished by an event.

A REPLY means "accepted", never "done" (docs/wire-protocol.md §2.3), so a move or an exposure
carries an ``op_id`` chosen by the host; the device reports ``op.done`` or ``op.failed`` with that
id as a critical (acknowledged, de-duplicated) event. Waiting on the id instead of on "the next
completion event" keeps a late event of an earlier, abandoned action from finishing a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator, Mapping

from ..errors import (
    LIMIT_FAULT,
    DeviceError,
    DeviceFault,
    DeviceLimitExceeded,
    DeviceLost,
    DeviceStateError,
)
from ..wire import Scalar

OP_DONE = "op.done"
OP_FAILED = "op.failed"


class Operations:
    def __init__(self, device: str) -> None:
        self._device = device
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[str, asyncio.Future[dict[str, Scalar]]]] = {}

    def begin(self, operation: str) -> tuple[int, asyncio.Future[dict[str, Scalar]]]:
        op_id = next(self._ids)
        fut: asyncio.Future[dict[str, Scalar]] = asyncio.get_running_loop().create_future()
        self._waiting[op_id] = (operation, fut)
        return op_id, fut

    def forget(self, op_id: int) -> None:
        self._waiting.pop(op_id, None)

    def on_event(self, name: str, fields: Mapping[str, Scalar]) -> bool:
        """Resolve the waiter of an ``op.*`` event; True when the event was one."""
        if name not in (OP_DONE, OP_FAILED):
            return False
        op_id = fields.get("op_id")
        entry = self._waiting.pop(op_id, None) if isinstance(op_id, int) else None
        if entry is None:
            return True  # an abandoned action finished late: nothing waits for it any more
        operation, fut = entry
        if fut.done():
            return True
        if name == OP_DONE:
            fut.set_result(dict(fields))
        else:
            fut.set_exception(failure(self._device, operation, fields))
        return True

    def fail_all(self, detail: str) -> None:
        """The link is gone: nobody will report these actions' ends."""
        waiting, self._waiting = self._waiting, {}
        for operation, fut in waiting.values():
            if not fut.done():
                fut.set_exception(DeviceLost(self._device, operation, detail))


def failure(device: str, operation: str, fields: Mapping[str, Scalar]) -> DeviceError:
    """The typed error an ``op.failed`` event (or an error REPLY) stands for.

    A ``fault`` of ``device_limit`` (the device refused beyond its own hard limits, in an
    INTERLOCK or a FAULT) is :class:`DeviceLimitExceeded` with the limit's fields; another
    interlock is a :class:`DeviceFault` naming it (``fault``, else ``interlock``).
    """
    kind = fields.get("error")
    message = str(fields.get("message") or "")
    fault = fields.get("fault")
    if fault == LIMIT_FAULT:
        return DeviceLimitExceeded.from_fields(device, operation, fields, message)
    if kind in ("fault", "interlock"):
        return DeviceFault(device, operation, str(fault or kind), message)
    if kind == "state":
        return DeviceStateError(device, operation, message)
    return DeviceError(device, operation, message or f"failed ({kind})")


def typed_fault(exc: DeviceFault) -> DeviceFault:
    """A fault a wire reply carried, as the contract types it: ``device_limit`` →
    :class:`DeviceLimitExceeded` (the limit named from the reply's message)."""
    if exc.fault == LIMIT_FAULT and not isinstance(exc, DeviceLimitExceeded):
        return DeviceLimitExceeded.from_fault(exc)
    return exc


@contextlib.contextmanager
def typed_faults() -> Iterator[None]:
    """Around a wire call: a refusal beyond the device's limits raises
    :class:`DeviceLimitExceeded`, as the in-process device does."""
    try:
        yield
    except DeviceFault as exc:
        typed = typed_fault(exc)
        if typed is exc:
            raise
        raise typed from None
