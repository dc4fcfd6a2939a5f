"""``open_link(url)``: the transport for a URL, chosen by its scheme (see docs in ``__init__``)."""

from __future__ import annotations

from ._base import Link
from ._mqtt import MqttLink
from ._serial import SerialLink
from ._tcp import TcpLink
from ._url import MQTT_FORM, SERIAL_FORMS, TCP_FORM, USB_FORM, bad_url
from ._usb import UsbLink

FORMS = (SERIAL_FORMS, TCP_FORM, MQTT_FORM, USB_FORM)


def open_link(url: str) -> Link:
    """An unopened :class:`Link` for ``url``; ValueError naming the URL when it is malformed.

    Only the URL is checked here; whether the port, host, broker or device is there is found
    out by ``await link.open()`` (:class:`LinkError`).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "serial" or scheme.startswith("serial+"):
        return SerialLink(url)
    if scheme == "tcp":
        return TcpLink(url)
    if scheme == "mqtt":
        return MqttLink(url)
    if scheme == "usb":
        return UsbLink(url)
    problem = f"unknown scheme {scheme!r}" if scheme else "no scheme"
    raise bad_url(url, problem, " | ".join(FORMS))
