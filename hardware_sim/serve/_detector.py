"""The flat-panel detector's own wire device: it only sends images (BULK) and answers status."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from drivers.remote._fields import Fields
from drivers.wire import Scalar

from ._service import Service


class DetectorService(Service):
    def __init__(self, name: str, now: Callable[[], float]) -> None:
        super().__init__(name, now)
        self.frames_sent = 0

    async def cmd_status(self, f: Mapping[str, Scalar]) -> Fields:
        return {"frames_sent": self.frames_sent}
