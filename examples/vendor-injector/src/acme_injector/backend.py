"""The ``acme://`` backend: opens the room's ACME injector (and nothing else)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from drivers.backends import RoomDevices, RoomRequest

from .driver import AcmeDevice, AcmeInjector


async def open_acme_room(request: RoomRequest) -> RoomDevices:
    """Open ``acme://<name>[?clock_offset_s=S]`` links; only the injector role is served.

    A real driver would open its transport here (``drivers.links.open_link``) and wait for the
    device to answer, bounded; the template's device lives in this process.
    """
    roles = set(request.links)
    if roles != {"injector"}:
        raise ValueError(f"the acme backend serves only the injector, not {sorted(roles)}")
    url = urlsplit(request.links["injector"])
    query = parse_qs(url.query)
    offset = float(query.get("clock_offset_s", ["1000.0"])[0])
    device = AcmeDevice(request.clock, clock_offset_s=offset)
    injector = AcmeInjector(url.netloc or "injector", device, request.clock)

    async def close() -> None:
        await injector.aclose()

    return RoomDevices(injector=injector, info={"injector_vendor": "ACME"}, close=close)
