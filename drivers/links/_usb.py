"""``usb://VVVV:PPPP?backend=NAME&...&interface=0&out=0x01&in=0x81``: USB bulk pipes (pyusb).

``backend=NAME`` names a plug-in in the entry-point group ``fluoroctl.usb_backends``: a callable
taking the remaining options (``dict[str, str]``) and returning a ``usb.backend.IBackend``
(the simulator registers ``sim``). Without it pyusb picks its default (libusb).

pyusb blocks, so transfers run in private threads (:mod:`._blocking`): reads poll with a short
timeout (a timeout means "no data yet"; it also bounds how long ``close`` waits), any other
``USBError`` means the device or pipe is gone and becomes :class:`LinkDown`.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import usb.core
import usb.util

from ._base import Link, LinkDown, LinkError
from ._blocking import BlockingIO
from ._url import USB_FORM, bad_url, int_option, query, split

ENTRY_POINT_GROUP = "fluoroctl.usb_backends"
READ_SIZE = 1 << 20  # one read takes up to 1 MiB: a 1024² uint16 image in two or three reads
POLL_MS = 50
WRITE_TIMEOUT_MS = 1000
_IDS = re.compile(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})")
_LINK_OPTIONS = {"backend", "interface", "out", "in"}


@dataclass(frozen=True, slots=True)
class UsbTarget:
    vendor_id: int
    product_id: int
    backend: str | None
    backend_options: dict[str, str] = field(default_factory=dict)
    interface: int = 0
    out_ep: int = 0x01
    in_ep: int = 0x81

    @property
    def ids(self) -> str:
        return f"{self.vendor_id:04x}:{self.product_id:04x}"


def parse_usb_url(url: str) -> UsbTarget:
    parts = split(url, USB_FORM)
    if parts.scheme != "usb":
        raise bad_url(url, f"scheme {parts.scheme!r} is not usb", USB_FORM)
    m = _IDS.fullmatch(parts.netloc)
    if m is None:
        raise bad_url(url, f"{parts.netloc!r} is not VVVV:PPPP (hex vendor:product)", USB_FORM)
    if parts.path not in ("", "/"):
        raise bad_url(url, "a USB link has no path", USB_FORM)
    options = query(url, parts, USB_FORM)
    backend = options.get("backend")
    if backend == "":
        raise bad_url(url, "empty backend name", USB_FORM)
    interface = int_option(url, "interface", options.get("interface", "0"), USB_FORM, 0, 255)
    out_ep = int_option(url, "out", options.get("out", "0x01"), USB_FORM, 0x01, 0x0F)
    in_ep = int_option(url, "in", options.get("in", "0x81"), USB_FORM, 0x81, 0x8F)
    rest = {k: v for k, v in options.items() if k not in _LINK_OPTIONS}
    if backend is None and rest:
        raise bad_url(url, f"options {', '.join(sorted(rest))} need a backend=NAME", USB_FORM)
    return UsbTarget(int(m[1], 16), int(m[2], 16), backend, rest, interface, out_ep, in_ep)


def load_backend(url: str, name: str, options: dict[str, str]) -> Any:
    """The backend plug-in ``name`` built from ``options``; LinkError naming what is missing."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        have = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        detail = (
            f"no USB backend {name!r} in entry-point group {ENTRY_POINT_GROUP} "
            f"(registered: {', '.join(have) or 'none'}; is the package that provides it "
            "installed, e.g. pip install -e .?)"
        )
        raise LinkError(url, detail)
    try:
        factory = found[0].load()
        return factory(dict(options))
    except Exception as exc:
        raise LinkError(url, f"USB backend {name!r} failed to start: {exc}") from exc


class UsbLink(Link):
    """Bulk OUT/IN pipes of one interface. Reads return up to 1 MiB per transfer."""

    def __init__(
        self,
        url: str,
        *,
        read_size: int = READ_SIZE,
        poll_ms: int = POLL_MS,
        write_timeout_ms: int = WRITE_TIMEOUT_MS,
    ) -> None:
        super().__init__(url)
        self.target = parse_usb_url(url)
        self._read_size = read_size
        self._poll_ms = poll_ms
        self._write_timeout_ms = write_timeout_ms
        self._dev: Any = None
        self._buf = array.array("B")
        self._io: BlockingIO | None = None
        self._down: str | None = None

    @property
    def is_open(self) -> bool:
        return self._io is not None and self._down is None

    def _name(self) -> str:
        t = self.target
        return f"USB device {t.ids}" + (f" (backend {t.backend})" if t.backend else "")

    def _open_blocking(self) -> Any:
        t = self.target
        backend = None
        if t.backend is not None:
            backend = load_backend(self.url, t.backend, t.backend_options)
        try:
            dev = usb.core.find(idVendor=t.vendor_id, idProduct=t.product_id, backend=backend)
        except usb.core.NoBackendError as exc:
            detail = f"no pyusb backend available (libusb missing?): {exc}"
            raise LinkError(self.url, detail) from exc
        if dev is None:
            why = getattr(backend, "last_problem", None)
            raise LinkError(self.url, f"USB device {t.ids} not found" + (f": {why}" if why else ""))
        try:
            with contextlib.suppress(NotImplementedError, usb.core.USBError):
                if dev.is_kernel_driver_active(t.interface):
                    dev.detach_kernel_driver(t.interface)
            dev.set_configuration()
            usb.util.claim_interface(dev, t.interface)
            intf = dev.get_active_configuration()[(t.interface, 0)]
        except (usb.core.USBError, IndexError, ValueError) as exc:
            usb.util.dispose_resources(dev)
            detail = f"{self._name()}: cannot claim interface {t.interface}: {exc}"
            raise LinkError(self.url, detail) from exc
        bulk = {
            ep.bEndpointAddress
            for ep in intf
            if usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
        }
        for ep in (t.out_ep, t.in_ep):
            if ep not in bulk:
                usb.util.dispose_resources(dev)
                have = ", ".join(f"0x{a:02x}" for a in sorted(bulk)) or "none"
                detail = f"interface {t.interface} has no bulk endpoint 0x{ep:02x} (bulk: {have})"
                raise LinkError(self.url, f"{self._name()}: {detail}")
        return dev

    async def open(self) -> None:
        await self.close()
        self._dev = await asyncio.to_thread(self._open_blocking)
        self._buf = array.array("B", bytes(self._read_size))
        self._down = None
        self._io = BlockingIO(self.url, "usb", self._poll)

    def _poll(self) -> bytes | None:
        try:
            n = self._dev.read(self.target.in_ep, self._buf, self._poll_ms)
        except usb.core.USBTimeoutError:
            return None
        except usb.core.USBError as exc:
            detail = f"bulk read from 0x{self.target.in_ep:02x} failed: {exc}"
            raise LinkDown(self.url, detail) from exc
        return memoryview(self._buf)[:n].tobytes() if n else None

    def _write_blocking(self, data: bytes) -> None:
        ep, timeout = self.target.out_ep, self._write_timeout_ms
        # pyusb copies anything but an array('B') byte by byte; convert once, at C speed.
        buf = array.array("B", data)
        done = 0
        while done < len(buf):
            try:
                done += self._dev.write(ep, buf[done:] if done else buf, timeout)
            except usb.core.USBTimeoutError as exc:
                detail = f"bulk write to 0x{ep:02x} timed out after {timeout} ms"
                raise LinkDown(self.url, detail) from exc
            except usb.core.USBError as exc:
                raise LinkDown(self.url, f"bulk write to 0x{ep:02x} failed: {exc}") from exc

    def _fail(self, exc: LinkDown) -> LinkDown:
        if self._down is None:
            self._down = exc.detail
        return LinkDown(self.url, self._down)

    async def read(self) -> bytes:
        if self._io is None:
            raise LinkDown(self.url, "not open")
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        try:
            return await self._io.read()
        except LinkDown as exc:
            raise self._fail(exc) from exc

    async def write(self, data: bytes) -> None:
        if self._io is None:
            raise LinkDown(self.url, "not open")
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        try:
            await self._io.call(lambda: self._write_blocking(data))
        except LinkDown as exc:
            raise self._fail(exc) from exc

    async def close(self) -> None:
        io_, dev, self._io, self._dev = self._io, self._dev, None, None
        self._down = None
        if io_ is not None:
            await io_.stop(grace_s=4 * self._poll_ms / 1000 + 1.0)
        if dev is not None:

            def release() -> None:
                with contextlib.suppress(Exception):
                    usb.util.release_interface(dev, self.target.interface)
                with contextlib.suppress(Exception):
                    usb.util.dispose_resources(dev)

            await asyncio.to_thread(release)
