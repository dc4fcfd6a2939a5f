"""Transports for the wire protocol: serial ports, TCP, MQTT, USB bulk.

``open_link(url)`` returns an unopened :class:`Link` chosen by the URL scheme:

- ``serial:///dev/ttyUSB0?baudrate=115200``, ``serial+socket://host:port``, ``serial+loop://``,
  ``serial+rfc2217://host:port`` (any pyserial URL behind ``serial+``)
- ``tcp://host:port``
- ``mqtt://host:port/<topic-prefix>[?role=device]`` (host writes ``<prefix>/down``, reads
  ``<prefix>/up``)
- ``usb://VVVV:PPPP?backend=<name>&<backend options>&interface=0&out=0x01&in=0x81`` (backend
  from entry-point group ``fluoroctl.usb_backends``; default pyusb/libusb)

Errors: :class:`LinkError` (could not open) and :class:`LinkDown` (was open, now gone) always
carry the URL and what happened; malformed URLs raise ``ValueError`` naming the expected form.
"""

from ._base import Link, LinkDown, LinkError
from ._factory import open_link
from ._fd import FdIO
from ._mqtt import MqttLink, parse_mqtt_url
from ._serial import SerialLink, SerialTarget, parse_serial_url
from ._tcp import TcpLink, parse_tcp_url
from ._usb import ENTRY_POINT_GROUP as USB_BACKENDS_GROUP
from ._usb import UsbLink, UsbTarget, load_backend, parse_usb_url
from .memory import MemoryCable

__all__ = [
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
    "UsbLink",
    "UsbTarget",
    "load_backend",
    "open_link",
    "parse_mqtt_url",
    "parse_serial_url",
    "parse_tcp_url",
    "parse_usb_url",
]
