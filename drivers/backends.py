"""Backends open a room's devices from link URLs; third parties register by entry point.

A backend is registered under the URL scheme of the links it serves, in the entry-point
group ``fluoroctl.backends`` (python-can style)::

    [project.entry-points."fluoroctl.backends"]
    sim = "hardware_sim.room:open_sim_room"

The scheduler looks backends up by scheme and never imports them directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .carm import CArm
from .clock import Clock
from .injector import Injector
from .table import Table


class OperatorEffects(Protocol):
    """What an operator's confirmed action does to a *simulated* patient.

    A real room has none (the technologist's hands do it); the simulator applies
    repositioning, the compression band and voiding to its patient model.
    """

    async def apply(self, action: str, position: str | None = None) -> None: ...


@dataclass
class DeviceSet:
    carm: CArm
    table: Table
    injector: Injector
    effects: OperatorEffects | None = None
    #: extra facts for the exam record (e.g. the simulated patient's identity)
    info: Mapping[str, Any] = field(default_factory=dict)
    close: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        if self.close is not None:
            await self.close()


@dataclass(frozen=True)
class RoomRequest:
    links: Mapping[str, str]  # device role ("carm", "table", "injector") -> link URL
    clock: Clock
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. patient scenario path
    base_dir: Path = Path(".")


Backend = Callable[[RoomRequest], Awaitable[DeviceSet]]


class BackendNotFound(LookupError):
    pass


def scheme_of(link: str) -> str:
    scheme = urlsplit(link).scheme
    if not scheme:
        raise ValueError(f"link {link!r} has no scheme (e.g. sim://carm, serial:///dev/ttyUSB0)")
    return scheme


def find_backend(scheme: str) -> Backend:
    found = entry_points(group="fluoroctl.backends", name=scheme)
    for ep in found:
        backend: Backend = ep.load()
        return backend
    known = sorted(ep.name for ep in entry_points(group="fluoroctl.backends"))
    raise BackendNotFound(
        f"no backend for links of scheme {scheme!r} (installed: {', '.join(known) or 'none'}); "
        "is the package that provides it installed (pip install -e .)?"
    )
