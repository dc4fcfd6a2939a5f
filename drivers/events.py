"""Unsolicited device events (status updates, motion complete, faults) and their fan-out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something a device reported on its own initiative.

    ``device_time_s`` is the device's timestamp mapped onto the host monotonic clock (the
    same clock the scheduler's deadlines use).
    """

    device: str
    kind: str
    device_time_s: float
    data: Mapping[str, Any] = field(default_factory=dict)


EventListener = Callable[[DeviceEvent], None]


class EventSource:
    """Mixin: devices publish events to listeners registered by the composition layer.

    Listeners are plain callables so a slow subscriber cannot reorder events; a listener that
    raises is logged and kept out of the device's control path.
    """

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _publish(self, event: DeviceEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken subscriber must never break device control
                log.exception("event listener failed on %s/%s", event.device, event.kind)
