"""Transports by URL scheme, imported only when a link of their scheme is opened.

Built-in transports are listed here; a third-party transport registers a callable
``url -> Link`` under its scheme in the entry-point group ``fluoroctl.links``::

    [project.entry-points."fluoroctl.links"]
    can = "acme_links.can:CanLink"

A serial-only integrator therefore needs neither aiomqtt nor pyusb: their modules are not
imported until an ``mqtt://`` or ``usb://`` link is opened, and then a missing library is one
line naming the package to install (:class:`TransportUnavailable`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from ._base import Link
from ._url import MQTT_FORM, SERIAL_FORMS, TCP_FORM, USB_FORM, bad_url

ENTRY_POINT_GROUP = "fluoroctl.links"

#: import name of an optional library -> the distribution that provides it
PACKAGES = {
    "aiomqtt": "aiomqtt",
    "serial": "pyserial",
    "serial_asyncio_fast": "pyserial-asyncio-fast",
    "usb": "pyusb",
}


@dataclass(frozen=True)
class Transport:
    scheme: str
    target: str  # "module:attribute", the callable url -> Link
    form: str  # the URL form, for error messages


BUILTIN: dict[str, Transport] = {
    "serial": Transport("serial", "drivers.links._serial:SerialLink", SERIAL_FORMS),
    "tcp": Transport("tcp", "drivers.links._tcp:TcpLink", TCP_FORM),
    "mqtt": Transport("mqtt", "drivers.links._mqtt:MqttLink", MQTT_FORM),
    "usb": Transport("usb", "drivers.links._usb:UsbLink", USB_FORM),
}


class TransportUnavailable(ImportError, ValueError):
    """The transport for a link's scheme needs a library that is not installed.

    Also a ValueError, so code that checks link URLs (``open_link`` raises ValueError for a
    malformed one) reports it the same way: one line, naming the package to install.
    """


def _base_scheme(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    # serial+socket:// etc. are serial links through pyserial's URL handlers
    return scheme.split("+", 1)[0]


def transports() -> dict[str, Transport]:
    """Every known scheme: built-ins, then those registered by entry point (not imported)."""
    known = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        known.setdefault(ep.name, Transport(ep.name, ep.value, f"{ep.name}://..."))
    return known


def load_transport(scheme: str) -> Callable[[str], Link]:
    """Import the transport for ``scheme``; :class:`TransportUnavailable` if its library is
    missing, ValueError if no transport serves the scheme."""
    known = transports()
    transport = known.get(scheme)
    if transport is None:
        forms = " | ".join(t.form for t in known.values())
        raise bad_url(f"{scheme}://", f"unknown scheme {scheme!r}", forms)
    module_name, _, attribute = transport.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".", 1)[0]
        if missing == module_name.split(".", 1)[0]:
            raise  # the transport itself is gone: a packaging error, not a missing extra
        package = PACKAGES.get(missing, missing)
        raise TransportUnavailable(
            f"{scheme}:// links need the Python package {package!r}, which is not installed: "
            f"pip install {package} (or pip install -e '.[links]')",
            name=missing,
        ) from None
    factory: Callable[[str], Link] = getattr(module, attribute)
    return factory


def open_link(url: str) -> Link:
    """An unopened :class:`Link` for ``url``; ValueError naming the URL when it is malformed,
    :class:`TransportUnavailable` (a ValueError) when its transport's library is missing.

    Only the URL is checked here; whether the port, host, broker or device is there is found
    out by ``await link.open()`` (:class:`LinkError`).
    """
    scheme = _base_scheme(url)
    if not scheme:
        forms = " | ".join(t.form for t in transports().values())
        raise bad_url(url, "no scheme", forms)
    if scheme not in transports():
        forms = " | ".join(t.form for t in transports().values())
        raise bad_url(url, f"unknown scheme {url.split('://', 1)[0]!r}", forms)
    return load_transport(scheme)(url)
