"""Transports for the wire protocol: serial ports, TCP, MQTT, USB bulk.

``open_link(url)`` returns an unopened :class:`Link` chosen by the URL scheme:

- ``serial:///dev/ttyUSB0?baudrate=115200``, ``serial+socket://host:port``, ``serial+loop://``,
  ``serial+rfc2217://host:port`` (any pyserial URL behind ``serial+``)
- ``tcp://host:port``, ``tcp+tls://host:port?ca=PATH[&cert=PATH&key=PATH]``
- ``mqtt://host:port/<topic-prefix>[?role=device]`` (host writes ``<prefix>/down``, reads
  ``<prefix>/up``); ``mqtt+tls://host:port/<prefix>?ca=PATH&cert=PATH&key=PATH&username=NAME&
  password_file=PATH`` for a secured broker (docs/links.md, docs/security.md)
- ``usb://VVVV:PPPP?backend=<name>&<backend options>&interface=0&out=0x01&in=0x81`` (backend
  from entry-point group ``fluoroctl.usb_backends``; default pyusb/libusb)
- any scheme a package registers in the entry-point group ``fluoroctl.links``

A transport's module (and its library: pyserial, aiomqtt, pyusb) is imported only when a link
of its scheme is opened, or when one of its names below is first used; a missing library is a
:class:`TransportUnavailable` naming the package to install.

Errors: :class:`LinkError` (could not open) and :class:`LinkDown` (was open, now gone) always
carry the URL and what happened; malformed URLs raise ``ValueError`` naming the expected form.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import Link, LinkDown, LinkError
from ._fd import FdIO
from ._registry import (
    ENTRY_POINT_GROUP as LINKS_GROUP,
)
from ._registry import (
    TransportUnavailable,
    load_transport,
    open_link,
    transports,
)
from .memory import MemoryCable

if TYPE_CHECKING:
    from ._mqtt import MqttLink, parse_mqtt_url
    from ._serial import SerialLink, SerialTarget, parse_serial_url
    from ._tcp import TcpLink, parse_tcp_url
    from ._usb import ENTRY_POINT_GROUP as USB_BACKENDS_GROUP
    from ._usb import UsbLink, UsbTarget, load_backend, parse_usb_url

#: name -> (module, attribute): imported on first use (PEP 562), so importing drivers.links
#: needs none of the transports' libraries
_LAZY = {
    "MqttLink": ("._mqtt", "MqttLink"),
    "parse_mqtt_url": ("._mqtt", "parse_mqtt_url"),
    "SerialLink": ("._serial", "SerialLink"),
    "SerialTarget": ("._serial", "SerialTarget"),
    "parse_serial_url": ("._serial", "parse_serial_url"),
    "TcpLink": ("._tcp", "TcpLink"),
    "parse_tcp_url": ("._tcp", "parse_tcp_url"),
    "USB_BACKENDS_GROUP": ("._usb", "ENTRY_POINT_GROUP"),
    "UsbLink": ("._usb", "UsbLink"),
    "UsbTarget": ("._usb", "UsbTarget"),
    "load_backend": ("._usb", "load_backend"),
    "parse_usb_url": ("._usb", "parse_usb_url"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


__all__ = [
    "LINKS_GROUP",
    "USB_BACKENDS_GROUP",
    "FdIO",
    "Link",
    "LinkDown",
    "LinkError",
    "MemoryCable",
    "MqttLink",
    "SerialLink",
    "SerialTarget",
    "TcpLink",
    "TransportUnavailable",
    "UsbLink",
    "UsbTarget",
    "load_backend",
    "load_transport",
    "open_link",
    "parse_mqtt_url",
    "parse_serial_url",
    "parse_tcp_url",
    "parse_usb_url",
    "transports",
]
