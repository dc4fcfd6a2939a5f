"""Backends open a room's devices from link URLs; third parties register by entry point.

A backend is registered under the URL scheme of the links it serves, in the entry-point
group ``fluoroctl.backends`` (python-can style)::

    [project.entry-points."fluoroctl.backends"]
    sim = "hardware_sim.room:open_sim_room"

The scheduler looks backends up by scheme and never imports them directly; a backend's
module is imported only when a room uses its scheme. A room may mix backends per role (a
simulated C-arm and table with a vendor's injector): :func:`open_room` opens each role with its
scheme's backend and combines them into one :class:`DeviceSet`. A backend that serves only some
roles returns :class:`RoomDevices` (see docs/vendor-drivers.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
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


@runtime_checkable
class ContrastProbe(Protocol):
    """A *simulated* patient that can say its iodine concentrations now, for displays only
    (the console's contrast curves); a real room has none. Reading must not change the model."""

    async def contrast_mg_ml(self) -> Mapping[str, float]: ...


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
    #: devices other backends of the same room opened already, by role (see ``open_room``)
    peers: Mapping[str, Any] = field(default_factory=dict)
    #: the room's key file (``key_file``): wire sessions are authenticated with its secret
    key_file: Path | None = None
    #: who controls the devices (the wire sessions' host id): the same for an exam and its
    #: resume, so a restarted process takes its own control lease over at once
    host_id: str | None = None


Backend = Callable[[RoomRequest], Awaitable[DeviceSet]]

#: Roles every room has; a backend serving only some of them returns :class:`RoomDevices`.
ROLES = ("carm", "table", "injector")


@dataclass
class RoomDevices:
    """What a backend serving *some* of a room's roles opened (e.g. only the injector).

    :func:`open_room` combines these, one per backend, into the room's :class:`DeviceSet`.
    """

    carm: CArm | None = None
    table: Table | None = None
    injector: Injector | None = None
    effects: OperatorEffects | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    close: Callable[[], Awaitable[None]] | None = None


#: What a backend registered under ``fluoroctl.backends`` may return.
AnyBackend = Callable[[RoomRequest], Awaitable[DeviceSet | RoomDevices]]


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


def find_backend(scheme: str) -> AnyBackend:
    """The backend registered for ``scheme``; its module is imported only now."""
    backend: AnyBackend = _entry_point(scheme).load()
    return backend


def group_links(links: Mapping[str, str]) -> list[tuple[EntryPoint, dict[str, str]]]:
    """The room's links grouped by the backend that serves them, in opening order.

    Several schemes may share a backend (the wire backend serves serial, USB, MQTT and TCP
    links): they form one group. The group that serves the C-arm opens last, so a simulated
    patient behind it can follow the devices other backends opened (``RoomRequest.peers``).
    """
    groups: dict[str, tuple[EntryPoint, dict[str, str]]] = {}
    for role, link in links.items():
        ep = _entry_point(scheme_of(link))
        groups.setdefault(ep.value, (ep, {}))[1][role] = link
    return sorted(groups.values(), key=lambda g: "carm" in g[1])


def backend_for_links(links: Mapping[str, str]) -> Backend:
    """The backend that opens a room with these links: each role by its own scheme's backend.

    Backends are looked up (and their modules imported) only for the schemes used. A room
    served by one backend gets exactly what that backend opens; a mixed room (e.g. a simulated
    C-arm and table with a vendor's injector) is combined by :func:`open_room`.
    """
    groups = group_links(links)
    if len(groups) == 1:
        single: AnyBackend = groups[0][0].load()

        async def open_single(request: RoomRequest) -> DeviceSet:
            return _complete(await single(request), request.links)

        return open_single
    return open_room


async def open_room(request: RoomRequest) -> DeviceSet:
    """Open every role with its scheme's backend and combine them into one DeviceSet.

    Each backend receives only its own roles' links, and in ``peers`` the devices the backends
    before it opened. From each result only the roles it was asked for are taken. If one fails,
    the ones already open are closed (newest first) before the error propagates.
    """
    opened: list[RoomDevices | DeviceSet] = []
    peers: dict[str, Any] = {}
    effects: OperatorEffects | None = None
    info: dict[str, Any] = {}
    try:
        for ep, links in group_links(request.links):
            backend: AnyBackend = ep.load()
            sub = replace(request, links=links, peers=dict(peers))
            result = await backend(sub)
            opened.append(result)
            for role in links:
                device = getattr(result, role, None)
                if role in ROLES and device is None:
                    raise ValueError(f"backend {ep.value} opened no {role} for {links[role]}")
                if role in ROLES:
                    peers[role] = device
            effects = effects or result.effects
            info.update(result.info)
    except BaseException:
        await _close_all(opened)
        raise
    missing = [role for role in ROLES if role not in peers]
    if missing:
        await _close_all(opened)
        raise ValueError(f"the room has no link for {', '.join(missing)}")

    async def close() -> None:
        await _close_all(opened)

    return DeviceSet(
        carm=peers["carm"],
        table=peers["table"],
        injector=peers["injector"],
        effects=effects,
        info=info,
        close=close,
    )


async def _close_all(opened: list[RoomDevices | DeviceSet]) -> None:
    for result in reversed(opened):
        if result.close is not None:
            await result.close()


def _complete(result: DeviceSet | RoomDevices, links: Mapping[str, str]) -> DeviceSet:
    if isinstance(result, DeviceSet):
        return result
    if result.carm is None or result.table is None or result.injector is None:
        missing = [r for r in ROLES if getattr(result, r) is None]
        raise ValueError(f"the room has no device for {', '.join(missing)} (links: {dict(links)})")
    return DeviceSet(
        result.carm, result.table, result.injector, result.effects, result.info, result.close
    )
