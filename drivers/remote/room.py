"""The wire backend: opens a room whose devices speak the reference protocol over real links.

Registered for the link schemes ``serial`` (and ``serial+<pyserial scheme>``), ``tcp``, ``mqtt``
and ``usb``. Roles and their default wire device ids (override with ``?device=N`` on the URL):
carm 1, table 2, injector 3, detector 4 (the C-arm's image link), effects 5 (simulator only).
"""

from __future__ import annotations

import asyncio

from ..backends import DeviceSet, RoomDevices, RoomRequest
from ..clock import Clock
from ..errors import DeviceError
from ..links import open_link
from ..wire import NodeState
from ..wire.client import WireClient
from ..wire.keys import KeyFileError, RoomKey, load_key_file
from ..wire.session import new_host_id
from .carm import RemoteCArm
from .effects import RemoteEffects
from .injector import RemoteInjector
from .table import RemoteTable

DEFAULT_DEVICE_IDS = {"carm": 1, "table": 2, "injector": 3, "detector": 4, "effects": 5}
#: Wall seconds a link may add to any operation: a request, its retries (4 × 250 ms) and the
#: reply. Added to the contracts' physical bounds (× the time scale) so a rehearsal at 60× does
#: not read cable latency as a hung device.
CONTROL_LINK_ALLOWANCE_S = 1.0
#: The C-arm also moves images: a 1024² frame is 2 MiB on the detector link, and a simulated
#: C-arm building a new view costs up to a second of computation.
IMAGE_LINK_ALLOWANCE_S = 3.0
#: Wall seconds to wait for each device's first heartbeat when the room opens.
CONNECT_TIMEOUT_S = 5.0


def split_device_id(role: str, url: str) -> tuple[str, int]:
    """``(link url without our ?device= parameter, wire device id)``.

    The rest of the URL is kept byte for byte (``serial:///dev/x`` must keep its empty host).
    """
    base, _, query = url.partition("?")
    device = DEFAULT_DEVICE_IDS.get(role, 0)
    rest = []
    for piece in query.split("&") if query else []:
        key, _, value = piece.partition("=")
        if key != "device":
            rest.append(piece)
            continue
        try:
            device = int(value)
        except ValueError:
            raise ValueError(f"{role} link {url}: device={value!r} is not an integer") from None
    if not 1 <= device <= 255:
        raise ValueError(f"{role} link {url}: wire device id must be 1-255, got {device}")
    return base + ("?" + "&".join(rest) if rest else ""), device


def make_client(role: str, url: str, clock: Clock, key: RoomKey, host_id: str) -> WireClient:
    link_url, device_id = split_device_id(role, url)
    return WireClient(
        lambda: open_link(link_url),
        device_id=device_id,
        name=role,
        clock=clock,
        key=key,
        host_id=host_id,
    )


def room_key(request: RoomRequest) -> RoomKey:
    """The room's key for its wire sessions; a ValueError naming the problem otherwise."""
    if request.key_file is None:
        raise KeyFileError(
            "devices on wire links need the room's key: add key_file to the room file "
            "(create one: fluoroctl keys new ROOM)"
        )
    return load_key_file(request.key_file)


async def _take_over_safe(client: WireClient) -> bool:
    """A device left in SAFE by a host that vanished (a crash, a cut cable) is cleared by the
    exam that now takes control: opening the room for an exam (or its resume) is that
    explicit decision (§2.5). The previous exam's record says what was interrupted."""
    if client.device_state is not NodeState.SAFE:
        return False
    await client.call("link.clear_safe")
    return True


async def open_wire_room(request: RoomRequest) -> DeviceSet | RoomDevices:
    """Connect every role's wire device; a room's subset of roles gives :class:`RoomDevices`."""
    links = dict(request.links)
    if "carm" in links and "detector" not in links:
        raise ValueError(
            "a C-arm over a wire link needs a detector link for its images (devices.detector)"
        )
    key = room_key(request)
    # one name for this exam's sessions with every device (its resume uses the same)
    host_id = request.host_id or new_host_id()
    clients = {
        role: make_client(role, url, request.clock, key, host_id) for role, url in links.items()
    }
    try:
        async with asyncio.TaskGroup() as tg:
            for client in clients.values():
                tg.create_task(client.connect(timeout_s=CONNECT_TIMEOUT_S))
        cleared = [role for role, client in clients.items() if await _take_over_safe(client)]
    except BaseException as exc:
        # Cancelled (Ctrl-C) or a device is missing: leave no link or task behind.
        for client in clients.values():
            await client.close()
        if isinstance(exc, BaseExceptionGroup):
            first = exc.exceptions[0]
            if isinstance(first, DeviceError | OSError):
                raise first from None
        raise
    carm = RemoteCArm("carm", clients["carm"], clients["detector"]) if "carm" in clients else None
    table = RemoteTable("table", clients["table"]) if "table" in clients else None
    injector = RemoteInjector("injector", clients["injector"]) if "injector" in clients else None
    scale = request.clock.time_scale
    if carm is not None:
        carm.latency_allowance_s = IMAGE_LINK_ALLOWANCE_S * scale
    for device in (table, injector):
        if device is not None:
            device.latency_allowance_s = CONTROL_LINK_ALLOWANCE_S * scale
    effects = RemoteEffects(clients["effects"]) if "effects" in clients else None

    async def close() -> None:
        for device in (carm, table, injector):
            if device is not None:
                await device.aclose()
        if "detector" in clients:
            await clients["detector"].close()
        if effects is not None:
            await effects.aclose()

    info: dict[str, object] = {"links": {role: url for role, url in links.items()}}
    info["key"] = key.fingerprint
    if cleared:
        info["safe_cleared"] = cleared
    if carm is None or table is None or injector is None:
        # Part of a mixed room (drivers.backends.open_room): other backends serve the rest.
        return RoomDevices(carm, table, injector, effects, info, close)
    return DeviceSet(
        carm=carm,
        table=table,
        injector=injector,
        effects=effects,
        info=info,
        close=close,
    )
