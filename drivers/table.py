"""Patient table contract.

``longitudinal_mm`` is the patient's cranio-caudal coordinate under the central ray
(0 = the iliac crest; positive = cranial), so a field named in a protocol maps directly to a
table position without knowing where the patient lies on the tabletop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ._bounded import Bounded
from ._validate import check_range
from .events import EventSource


@dataclass(frozen=True, slots=True)
class TablePosition:
    longitudinal_mm: float = 0.0
    lateral_mm: float = 0.0
    height_mm: float = 800.0
    tilt_deg: float = 0.0

    def __post_init__(self) -> None:
        check_range("longitudinal_mm", self.longitudinal_mm, -1200.0, 1200.0)
        check_range("lateral_mm", self.lateral_mm, -200.0, 200.0)
        check_range("height_mm", self.height_mm, 500.0, 1100.0)
        check_range("tilt_deg", self.tilt_deg, -30.0, 90.0)

    def distance_to(self, other: TablePosition) -> float:
        """Largest single-axis travel in mm (axes move together)."""
        return max(
            abs(self.longitudinal_mm - other.longitudinal_mm),
            abs(self.lateral_mm - other.lateral_mm),
            abs(self.height_mm - other.height_mm),
        )


@dataclass(frozen=True, slots=True)
class TableStatus:
    position: TablePosition
    moving: bool
    #: host-monotonic time the last motion completed (device-reported), None before any move
    motion_completed_at_s: float | None = None
    faults: tuple[str, ...] = ()


class Table(Bounded, EventSource, ABC):
    """Public methods bound every await; drivers implement the ``_`` hooks."""

    #: Used to derive a move's time bound from distance when the caller gives none.
    max_speed_mm_s: float = 100.0
    tilt_speed_deg_s: float = 5.0

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    async def move_to(
        self, target: TablePosition, *, timeout_s: float | None = None
    ) -> TableStatus:
        """Move and return once the device reports motion complete."""
        if timeout_s is None:
            current = (await self.status()).position
            travel_s = current.distance_to(target) / self.max_speed_mm_s
            tilt_s = abs(current.tilt_deg - target.tilt_deg) / self.tilt_speed_deg_s
            timeout_s = 2.0 * max(travel_s, tilt_s) + 3.0
        return await self._bounded("move_to", timeout_s, self._move_to(target))

    async def stop(self, *, timeout_s: float = 0.1) -> None:
        """Safe state: stop all motion. Idempotent."""
        await self._bounded("stop", timeout_s, self._stop())

    async def status(self, *, timeout_s: float = 1.0) -> TableStatus:
        return await self._bounded("status", timeout_s, self._status())

    async def safe_state(self, *, timeout_s: float = 0.1) -> None:
        await self.stop(timeout_s=timeout_s)

    @abstractmethod
    async def _move_to(self, target: TablePosition) -> TableStatus: ...

    @abstractmethod
    async def _stop(self) -> None: ...

    @abstractmethod
    async def _status(self) -> TableStatus: ...
