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
from importlib.metadata import EntryPoint, entry_points
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


def _entry_point(scheme: str) -> EntryPoint:
    # ``serial+socket://`` is a serial link through pyserial's socket:// URL handler.
    base = scheme.split("+", 1)[0]
    for ep in entry_points(group="fluoroctl.backends", name=base):
        return ep
    known = sorted(ep.name for ep in entry_points(group="fluoroctl.backends"))
    raise BackendNotFound(
        f"no backend for links of scheme {scheme!r} (installed: {', '.join(known) or 'none'}); "
        "is the package that provides it installed (pip install -e .)?"
    )


def find_backend(scheme: str) -> Backend:
    backend: Backend = _entry_point(scheme).load()
    return backend


def backend_for_links(links: Mapping[str, str]) -> Backend:
    """The one backend that serves every link of a room.

    Several schemes may share a backend (the wire backend serves serial, USB, MQTT and TCP
    links); a room whose links need different backends is refused, naming them.
    """
    chosen: dict[str, list[str]] = {}
    eps: dict[str, EntryPoint] = {}
    for role, link in links.items():
        ep = _entry_point(scheme_of(link))
        chosen.setdefault(ep.value, []).append(role)
        eps[ep.value] = ep
    if len(chosen) != 1:
        detail = "; ".join(f"{', '.join(roles)} → {value}" for value, roles in chosen.items())
        raise ValueError(
            f"this room's links need different backends ({detail}); one backend must serve "
            "every device of a room"
        )
    backend: Backend = next(iter(eps.values())).load()
    return backend
