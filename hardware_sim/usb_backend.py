"""A pyusb backend (``usb.backend.IBackend``) that reaches a simulated USB gadget over TCP.

Registered as entry point ``fluoroctl.usb_backends: sim``, so the host opens the simulated
detector with ``usb://1209:f10c?backend=sim&host=127.0.0.1&port=PORT`` through the real pyusb
API (``usb.core.find``, ``set_configuration``, ``Device.read``/``write``). The gadget itself is
``hardware_sim.links.UsbGadget``.

Gadget protocol (this module defines it; both ends import it). Every message is
``type (u8) | length (u32, big-endian) | payload``. The backend opens one TCP connection to
enumerate, and one per endpoint in use, so a read blocked on the IN pipe never holds up a write
on the OUT pipe (as with real USB, where each endpoint has its own queue of transfers):

==========  =========  ======================================================================
DESCRIBE    → gadget   empty; answered by DESCRIPTOR (JSON: ids, endpoints, serial, …)
ATTACH      → gadget   endpoint address (u8); binds the connection to it; answered by OK
OUT         → gadget   timeout ms (u32) + one OUT transfer; answered by OK (bytes taken, u32),
                       TIMEOUT (device did not take it in time) or ERROR (failed transfer)
READ        → gadget   max length (u32) + timeout ms (u32); answered by IN (≤ max length
                       bytes), TIMEOUT or ERROR
==========  =========  ======================================================================

Timeouts are enforced by the gadget, so a late answer can never be mistaken for the answer to
the next request; the backend adds a guard of its own only against a gadget that hangs.
A timeout of 0 means "no limit", as in libusb.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import usb.backend
import usb.core

HEADER = struct.Struct(">BI")
U32 = struct.Struct(">I")
READ_REQ = struct.Struct(">II")
GUARD_S = 5.0  # extra wait for the gadget's own answer beyond the transfer timeout
CONNECT_TIMEOUT_S = 1.0

# libusb error codes (pyusb reports them as ``backend_error_code``)
LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_NOT_FOUND = -5
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_PIPE = -9
LIBUSB_ERROR_NOT_SUPPORTED = -12


class Msg(IntEnum):
    DESCRIBE = 1
    DESCRIPTOR = 2
    ATTACH = 3
    OK = 4
    OUT = 5
    READ = 6
    IN = 7
    ERROR = 8
    TIMEOUT = 9


def pack(kind: Msg, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


# --- descriptors (the attribute sets pyusb's core reads) --------------------------------


@dataclass
class DeviceDescriptor:
    idVendor: int
    idProduct: int
    iSerialNumber: int = 3
    bLength: int = 18
    bDescriptorType: int = 1
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0100
    iManufacturer: int = 1
    iProduct: int = 2
    bNumConfigurations: int = 1
    address: int = 1
    bus: int = 1
    port_number: int = 1
    port_numbers: tuple[int, ...] = (1,)
    speed: int = 3  # usb.util.SPEED_HIGH


@dataclass
class ConfigurationDescriptor:
    bNumInterfaces: int = 1
    bLength: int = 9
    bDescriptorType: int = 2
    wTotalLength: int = 32
    bConfigurationValue: int = 1
    iConfiguration: int = 0
    bmAttributes: int = 0x80
    bMaxPower: int = 50
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class InterfaceDescriptor:
    bInterfaceNumber: int
    bNumEndpoints: int = 2
    bLength: int = 9
    bDescriptorType: int = 4
    bAlternateSetting: int = 0
    bInterfaceClass: int = 0xFF  # vendor specific
    bInterfaceSubClass: int = 0
    bInterfaceProtocol: int = 0
    iInterface: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class EndpointDescriptor:
    bEndpointAddress: int
    bmAttributes: int = 0x02  # bulk
    wMaxPacketSize: int = 512
    bLength: int = 7
    bDescriptorType: int = 5
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SimDevice:
    """What ``enumerate_devices`` yields: where the gadget is and what it said it is."""

    host: str
    port: int
    vendor_id: int
    product_id: int
    interface: int
    out_ep: int
    in_ep: int
    serial: str

    @property
    def endpoints(self) -> tuple[int, int]:
        return (self.out_ep, self.in_ep)


def _no_device(detail: str) -> usb.core.USBError:
    return usb.core.USBError(
        f"No such device (it may have been disconnected): {detail}",
        LIBUSB_ERROR_NO_DEVICE,
        errno.ENODEV,
    )


def _recv_exact(sock: socket.socket, view: memoryview) -> None:
    while view:
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionResetError("gadget closed the connection")
        view = view[n:]


def _recv_header(sock: socket.socket) -> tuple[int, int]:
    head = bytearray(HEADER.size)
    _recv_exact(sock, memoryview(head))
    kind, length = HEADER.unpack(head)
    return kind, length


def _recv_payload(sock: socket.socket, length: int) -> bytes:
    buf = bytearray(length)
    _recv_exact(sock, memoryview(buf))
    return bytes(buf)


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Handle:
    """An open device: one socket per endpoint, each with its own lock."""

    def __init__(self, dev: SimDevice) -> None:
        self.dev = dev
        self.configuration = 0
        self.claimed: set[int] = set()
        self._socks: dict[int, socket.socket] = {}
        self._locks = {ep: threading.Lock() for ep in dev.endpoints}
        self._closed = False

    def lock(self, ep: int) -> threading.Lock:
        lock = self._locks.get(ep)
        if lock is None:
            raise usb.core.USBError(
                f"Entity not found: no endpoint 0x{ep:02x}", LIBUSB_ERROR_NOT_FOUND, errno.ENOENT
            )
        return lock

    def sock(self, ep: int) -> socket.socket:
        """The endpoint's connection (caller holds the endpoint lock)."""
        if self._closed:
            raise _no_device("handle closed")
        sock = self._socks.get(ep)
        if sock is None:
            try:
                sock = _connect(self.dev.host, self.dev.port)
                sock.settimeout(None)
                sock.sendall(pack(Msg.ATTACH, bytes([ep])))
                kind, length = _recv_header(sock)
                payload = _recv_payload(sock, length)
            except OSError as exc:
                raise _no_device(f"gadget {self.dev.host}:{self.dev.port}: {exc}") from exc
            if kind != Msg.OK:
                sock.close()
                raise _no_device(f"gadget refused endpoint 0x{ep:02x}: {payload!r}")
            self._socks[ep] = sock
        return sock

    def drop(self, ep: int) -> None:
        sock = self._socks.pop(ep, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def reset(self) -> None:
        """Drop every endpoint connection; the next transfer reattaches."""
        for ep in list(self._socks):
            self.drop(ep)

    def close(self) -> None:
        self._closed = True
        self.reset()


class SimUsbBackend(usb.backend.IBackend):  # type: ignore[misc]
    """pyusb backend for one simulated gadget at ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host = host
        self.port = port
        # Why the last enumeration found nothing; the host link quotes it in "not found".
        self.last_problem: str | None = None

    # --- enumeration and descriptors ---------------------------------------------------

    def enumerate_devices(self) -> Iterator[SimDevice]:
        try:
            with _connect(self.host, self.port) as sock:
                sock.sendall(pack(Msg.DESCRIBE))
                kind, length = _recv_header(sock)
                payload = _recv_payload(sock, length)
        except OSError as exc:
            reason = "refused connection" if isinstance(exc, ConnectionRefusedError) else exc
            self.last_problem = f"no gadget at {self.host}:{self.port} ({reason})"
            return
        if kind != Msg.DESCRIPTOR:
            self.last_problem = f"gadget at {self.host}:{self.port} answered {kind} to DESCRIBE"
            return
        d = json.loads(payload)
        self.last_problem = None
        yield SimDevice(
            self.host,
            self.port,
            int(d["vendor_id"]),
            int(d["product_id"]),
            int(d["interface"]),
            int(d["out_ep"]),
            int(d["in_ep"]),
            str(d["serial"]),
        )

    def get_parent(self, dev: SimDevice) -> None:
        return None

    def get_device_descriptor(self, dev: SimDevice) -> DeviceDescriptor:
        return DeviceDescriptor(dev.vendor_id, dev.product_id)

    def get_configuration_descriptor(self, dev: SimDevice, config: int) -> ConfigurationDescriptor:
        if config != 0:
            raise IndexError(f"no configuration {config}")
        return ConfigurationDescriptor()

    def get_interface_descriptor(
        self, dev: SimDevice, intf: int, alt: int, config: int
    ) -> InterfaceDescriptor:
        # pyusb walks alternate settings until IndexError: there is exactly one.
        if config != 0 or intf != 0 or alt != 0:
            raise IndexError(f"no interface {intf} alt {alt} in configuration {config}")
        return InterfaceDescriptor(dev.interface)

    def get_endpoint_descriptor(
        self, dev: SimDevice, ep: int, intf: int, alt: int, config: int
    ) -> EndpointDescriptor:
        if config != 0 or intf != 0 or alt != 0 or not 0 <= ep < len(dev.endpoints):
            raise IndexError(f"no endpoint {ep} in interface {intf} alt {alt}")
        return EndpointDescriptor(dev.endpoints[ep])

    # --- device handle -------------------------------------------------------------------

    def open_device(self, dev: SimDevice) -> _Handle:
        return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        dev_handle.close()

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        if config_value not in (0, 1):
            raise usb.core.USBError("Invalid configuration", LIBUSB_ERROR_NOT_FOUND, errno.ENOENT)
        dev_handle.configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        return dev_handle.configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        if intf != dev_handle.dev.interface or altsetting != 0:
            raise usb.core.USBError("Invalid alternate setting", LIBUSB_ERROR_NOT_FOUND)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        if intf != dev_handle.dev.interface:
            raise usb.core.USBError(
                f"Entity not found: no interface {intf}", LIBUSB_ERROR_NOT_FOUND, errno.ENOENT
            )
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev_handle.claimed.discard(intf)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        dev_handle.lock(ep)  # validates the endpoint; nothing halts in the simulation

    def reset_device(self, dev_handle: _Handle) -> None:
        dev_handle.reset()

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def ctrl_transfer(self, dev_handle: _Handle, *args: Any) -> Any:
        # String descriptors and vendor requests are not simulated; say so like libusb would.
        raise usb.core.USBError(
            "Operation not supported or unimplemented on this platform",
            LIBUSB_ERROR_NOT_SUPPORTED,
            errno.ENOSYS,
        )

    # --- bulk transfers ------------------------------------------------------------------

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        if ep not in (dev_handle.dev.out_ep,):
            raise usb.core.USBError(f"Pipe error: 0x{ep:02x} is not an OUT endpoint", -9)
        view = memoryview(data).cast("B")
        with dev_handle.lock(ep):
            sock = dev_handle.sock(ep)
            try:
                sock.settimeout(timeout / 1000 + GUARD_S if timeout else None)
                head = HEADER.pack(Msg.OUT, U32.size + len(view)) + U32.pack(timeout)
                sock.sendall(head)
                sock.sendall(view)
                kind, length = _recv_header(sock)
                payload = _recv_payload(sock, length)
            except OSError as exc:
                dev_handle.drop(ep)
                raise _no_device(f"bulk write to 0x{ep:02x}: {exc}") from exc
        return self._answer(kind, payload, ep, "write")

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        if ep not in (dev_handle.dev.in_ep,):
            raise usb.core.USBError(f"Pipe error: 0x{ep:02x} is not an IN endpoint", -9)
        view = memoryview(buff).cast("B")
        with dev_handle.lock(ep):
            sock = dev_handle.sock(ep)
            try:
                sock.settimeout(timeout / 1000 + GUARD_S if timeout else None)
                sock.sendall(pack(Msg.READ, READ_REQ.pack(len(view), timeout)))
                kind, length = _recv_header(sock)
                if kind == Msg.IN:
                    if length > len(view):
                        raise ConnectionError(f"gadget sent {length} bytes for {len(view)}")
                    # Straight into the caller's buffer: no copy on this side of the kernel.
                    _recv_exact(sock, view[:length])
                    return length
                payload = _recv_payload(sock, length)
            except OSError as exc:
                dev_handle.drop(ep)
                raise _no_device(f"bulk read from 0x{ep:02x}: {exc}") from exc
        return self._answer(kind, payload, ep, "read")

    @staticmethod
    def _answer(kind: int, payload: bytes, ep: int, what: str) -> int:
        if kind == Msg.OK:
            count: int = U32.unpack(payload)[0]
            return count
        if kind == Msg.TIMEOUT:
            raise usb.core.USBTimeoutError(
                "Operation timed out", LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT
            )
        if kind == Msg.ERROR:
            text = payload.decode("utf-8", "replace")
            raise usb.core.USBError(
                f"Input/Output Error: bulk {what} 0x{ep:02x}: {text}", LIBUSB_ERROR_IO, errno.EIO
            )
        raise _no_device(f"gadget answered {kind} to a bulk {what}")

    def _finalize_object(self) -> None:
        return None


def sim_backend(options: dict[str, str]) -> SimUsbBackend:
    """Entry point ``fluoroctl.usb_backends: sim``. Options: ``port``, ``host`` (127.0.0.1)."""
    unknown = sorted(set(options) - {"host", "port"})
    if unknown:
        raise ValueError(
            f"unknown sim backend option(s) {', '.join(unknown)} (allowed: host, port)"
        )
    if "port" not in options:
        raise ValueError("the sim backend needs port=PORT (the gadget's TCP port)")
    try:
        port = int(options["port"])
    except ValueError:
        raise ValueError(f"port={options['port']!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port={port} out of range 1..65535")
    return SimUsbBackend(options.get("host", "127.0.0.1"), port)
