"""``fluoroctl sim serve``: a simulated room in its own process, its devices on real links.

The room file says which kind of link each device has (the scheme of its URL); the simulator
serves the device end of each: a pty (at a stable symlink, mode 0600) for ``serial``, a TCP
listener for ``tcp`` (TLS for ``tcp+tls``), the device role on a broker for ``mqtt``, a USB
gadget reached through the simulator's pyusb backend for ``usb``. What a run needs to reach
them (pty paths, ports, the broker) goes to ``on_ready``, which the CLI writes to the
endpoints file.

The broker it starts itself (no ``--broker``, no room ``broker:``) is secured: TLS only, on
loopback, client certificates from the room's local CA, a password per identity and an ACL
(:mod:`hardware_sim.broker_auth`); its URL for the host carries the host identity's file
paths, never a secret. Certificates live in ``<run dir>/pki``, broker files in
``<run dir>/broker``, both created at first start and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from drivers import Clock, Technique
from drivers.backends import RoomRequest
from drivers.links import Link
from drivers.links._mqtt_url import link_on_broker
from drivers.links._tls import server_context
from drivers.remote import DEFAULT_DEVICE_IDS, split_device_id
from drivers.wire.keys import RoomKey, ensure_key_file

from ..broker_auth import HOST_IDENTITY, SecuredBroker, secure_broker_files
from ..faults import FaultInjector, FaultSpec, parse_fault, parse_faults
from ..links import MqttDeviceLink, PtyServer, TcpServerLink, UsbGadget
from ..pki import LocalPki
from ..room import SimEffects, SimRoom
from ..wire import DeviceEndpoint
from ._detector import DetectorService
from ._service import Service
from .devices import CArmService, EffectsService, InjectorService, TableService

ReadyCallback = Callable[[dict[str, str], "str | None"], None]
#: A KUB film technique: warms the spectra and the supine view every IVU protocol starts with.
WARM_UP_TECHNIQUE = Technique(75.0, 400.0, 50.0)
#: Wall seconds of computing a simulated exposure may take (a new view: up to ~1 s).
COMPUTE_ALLOWANCE_S = 3.0


@dataclass
class ServedDevice:
    role: str
    link: Link
    service: Service
    endpoint: DeviceEndpoint
    #: what ``${role}`` in the room's link URL is replaced by
    published: dict[str, str] = field(default_factory=dict)


class SimServer:
    """Owns the simulated room, its device-side links and endpoints, and (maybe) a broker."""

    def __init__(
        self,
        links: Mapping[str, str],
        options: Mapping[str, Any],
        base_dir: Path,
        run_dir: Path,
        broker: str | None,
        log: Callable[[str], None] = lambda _msg: None,
        key: RoomKey | None = None,
    ) -> None:
        for role in ("carm", "table", "injector", "detector"):
            if role not in links:
                raise ValueError(f"sim serve needs a {role} link in the room file")
        self.links = dict(links)
        self.run_dir = run_dir
        #: what every device's wire endpoint authenticates sessions with (the room's key file)
        self.key = key or ensure_key_file(run_dir / "room.key")
        self.broker = broker
        self._log = log
        self.clock = Clock.for_running_loop()
        self.room = SimRoom(
            RoomRequest(
                {r: f"sim://{r}" for r in ("carm", "table", "injector")},
                self.clock,
                # the wire protocol carries neither the panel's corrections nor calibration
                # frames yet: a served panel corrects on board unless the room says raw
                {"panel": "corrected", **options},
                base_dir,
            )
        )
        self.mosquitto: Any = None  # hardware_sim.broker.Mosquitto when we started one
        self.secured: SecuredBroker | None = None  # its TLS files, passwords and ACL
        self.pki = LocalPki(run_dir / "pki")  # created only when a TLS link needs it
        self.devices: dict[str, ServedDevice] = {}
        self._fault_tasks: set[asyncio.Future[None]] = set()

    # -- set-up ------------------------------------------------------------------------------
    async def start(self) -> tuple[dict[str, str], str | None]:
        room = self.room
        # Before the links go live: a first exposure would otherwise cost ~2 s of wall time,
        # which a rehearsal at 60× reads as two minutes of a late film. It computes in the
        # executor while the broker and the services start.
        warming = asyncio.ensure_future(room.carm.warm_up(WARM_UP_TECHNIQUE))
        try:
            return await self._start_links(room, warming)
        finally:
            if not warming.done():
                warming.cancel()
            elif not warming.cancelled():
                warming.exception()  # seen: a failed start reports its own error

    async def _start_links(
        self, room: SimRoom, warming: asyncio.Future[None]
    ) -> tuple[dict[str, str], str | None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if _mqtt_prefixes(self.links) and not self.broker:
            self._start_broker()
        now = self.clock.now
        detector = DetectorService("detector", now)
        services: dict[str, Service] = {
            "detector": detector,
            "table": TableService(room.table, now),
            "injector": InjectorService(room.injector, now),
        }
        if "effects" in self.links:
            services["effects"] = EffectsService("effects", SimEffects(room), now)
        for role, service in services.items():
            await self._serve(role, service)
        carm_service = CArmService(
            room.carm, self.devices["detector"].endpoint, now, self.clock.time_scale
        )
        await self._serve("carm", carm_service)
        for role, device in (
            ("carm", room.carm),
            ("table", room.table),
            ("injector", room.injector),
        ):
            device.subscribe(self.devices[role].service.on_device_event)
        # The room's own record of what was done to the patient (outlives a host restart).
        room.injector.subscribe(
            lambda e: (
                self._log(f"injector {e.kind} t={e.device_time_s:.3f}")
                if e.kind in ("injection_started", "completed", "stopped", "faulted")
                else None
            )
        )
        await warming
        # Rendering and image transfer are wall time; the devices' own bounds are loop time.
        scale = self.clock.time_scale
        room.carm.latency_allowance_s = COMPUTE_ALLOWANCE_S * scale
        room.table.latency_allowance_s = room.injector.latency_allowance_s = 0.5 * scale
        published: dict[str, str] = {}
        for served in self.devices.values():
            published |= served.published
        return published, self.broker

    def _start_broker(self) -> None:
        from ..broker import Mosquitto

        self.secured = secure_broker_files(
            self.run_dir / "broker", _mqtt_prefixes(self.links), self.pki
        )
        self.mosquitto = Mosquitto(security=self.secured.security)
        self.mosquitto.start()
        self.broker = f"{self.mosquitto.address}?{self.secured.query(HOST_IDENTITY)}"
        self._log(
            f"started Mosquitto on {self.mosquitto.address} (TLS, passwords, ACL; "
            f"credentials in {self.run_dir / 'broker'})"
        )

    async def _serve(self, role: str, service: Service) -> None:
        template = self.links[role]
        _, device_id = split_device_id(role, _placeholder_free(template))
        link, published = await self._device_link(role, template)
        endpoint = DeviceEndpoint(
            link,
            device_id=device_id,
            name=role,
            handler=service.handle,
            clock=self.clock,
            key=self.key,
            on_host_lost=service.safe_state,
        )
        service.bind(endpoint)
        self.devices[role] = ServedDevice(role, link, service, endpoint, published)

    async def _device_link(self, role: str, template: str) -> tuple[Link, dict[str, str]]:
        parts = urlsplit(_placeholder_free(template))
        scheme = parts.scheme.split("+", 1)[0]
        if scheme == "serial":
            pty = PtyServer(self.run_dir / f"{role}.tty")
            await pty.open()
            return pty, {role: str(pty.path)}
        if scheme == "tcp":
            context: ssl.SSLContext | None = None
            published: dict[str, str] = {}
            if parts.scheme == "tcp+tls":
                # A host URL with a client certificate means the device requires one.
                wants_cert = "cert" in parse_qs(parts.query)
                context, published = self._tls_server(client_certs=wants_cert)
            tcp = TcpServerLink("127.0.0.1", 0, ssl_context=context)
            await tcp.open()
            return tcp, published | {role: f"{tcp.host}:{tcp.port}"}
        if scheme == "usb":
            vid, _, pid = parts.netloc.partition(":")
            gadget = UsbGadget(int(vid, 16), int(pid, 16))
            await gadget.open()
            return gadget, {f"{role}_port": str(gadget.port), f"{role}_host": gadget.host}
        if scheme == "mqtt":
            assert self.broker is not None
            if self.secured is not None:  # our broker: the device logs in as itself
                url = f"{self.mosquitto.address}{parts.path}?{self.secured.query(role)}"
            else:  # the room's broker, with the options its URL gives
                url = link_on_broker(f"{parts.scheme}://{parts.path}", self.broker)
            mqtt = MqttDeviceLink(url)
            await mqtt.open()
            return mqtt, {}
        raise ValueError(f"{role} link {template}: sim serve cannot serve {parts.scheme}:// links")

    def _tls_server(self, *, client_certs: bool) -> tuple[ssl.SSLContext, dict[str, str]]:
        """A TLS context from the room's CA, and what the host's URL needs of it:
        ``${tls_ca}``, and its own certificate ``${tls_cert}``/``${tls_key}``."""
        pki = self.pki.ensure([HOST_IDENTITY])
        host = pki.credential(HOST_IDENTITY)
        context = server_context(pki.server.cert, pki.server.key, pki.ca if client_certs else None)
        published = {
            "tls_ca": str(pki.ca.absolute()),
            "tls_cert": str(host.cert.absolute()),
            "tls_key": str(host.key.absolute()),
        }
        return context, published

    # -- running -----------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for served in self.devices.values():
                tg.create_task(served.endpoint.serve())
                tg.create_task(served.service.forward_events())

    async def aclose(self) -> None:
        for served in self.devices.values():
            await served.service.aclose()
            with contextlib.suppress(Exception):
                await served.endpoint.close()
        if self.mosquitto is not None:
            self.mosquitto.close()

    # -- faults on the links (hardware_sim.faults.LINK_KINDS) ---------------------------------
    def link_fault_by_kind(self, kind: str) -> str:
        role, _, what = kind.partition(".")
        if role == "broker":
            return self.link_fault("broker_restart", None)
        return self.link_fault({"link_close": "close"}.get(what, what), role)

    def link_fault(self, kind: str, role: str | None) -> str:
        """Apply a link fault now; returns what was done, for the log."""
        if kind == "broker_restart":
            if self.mosquitto is None:
                raise ValueError("broker_restart needs the broker sim serve started itself")
            self.mosquitto.restart()
            return f"restarted Mosquitto on {self.broker}"
        if role is None or role not in self.devices:
            raise ValueError(f"link fault {kind} needs a device role ({', '.join(self.devices)})")
        served = self.devices[role]
        link = served.link
        if kind == "close":
            if isinstance(link, PtyServer):
                link.restart()
            elif isinstance(link, TcpServerLink):
                link.drop_peer()
            elif isinstance(link, UsbGadget):
                link.drop_host()
            else:
                raise ValueError(f"link fault close is not defined for {role}'s {link.url}")
            return f"closed {role}'s link {link.url}"
        if kind == "garbage":
            if isinstance(link, MqttDeviceLink):
                self._spawn_write(link, b"\x7e\x01garbage\x00\xff\x7f")
                return f"published a garbage message on {role}'s topic"
            served.endpoint.inject_garbage(64)
            return f"sent 64 garbage bytes on {role}'s link"
        if kind == "usb_fail":
            if not isinstance(link, UsbGadget):
                raise ValueError(f"usb_fail: {role}'s link is not USB")
            link.fail_next_transfers(1)
            return f"failing the next USB transfer of {role}"
        raise ValueError(f"unknown link fault {kind!r} (close, garbage, usb_fail, broker_restart)")

    def _spawn_write(self, link: Link, data: bytes) -> None:
        task = asyncio.ensure_future(link.write(data))
        self._fault_tasks.add(task)
        task.add_done_callback(self._fault_tasks.discard)


def _mqtt_prefixes(links: Mapping[str, str]) -> dict[str, str]:
    """Role -> topic prefix of each MQTT link (the identities of a secured broker)."""
    out: dict[str, str] = {}
    for role, url in links.items():
        parts = urlsplit(_placeholder_free(url))
        if parts.scheme.split("+", 1)[0] == "mqtt":
            out[role] = parts.path.strip("/")
    return out


def _placeholder_free(url: str) -> str:
    """The URL with ``${...}`` blanked, for parsing its scheme, host and query."""
    import re

    return re.sub(r"\$\{[A-Za-z0-9_]+\}", "x", url)


async def serve_room(
    *,
    links: Mapping[str, str],
    options: Mapping[str, Any],
    base_dir: Path,
    run_dir: Path,
    broker: str | None,
    faults: Sequence[str] = (),
    on_ready: ReadyCallback,
    log: Callable[[str], None] = lambda _msg: None,
    key_file: Path | None = None,
) -> None:
    """Entry point ``fluoroctl.sim: serve``; runs until cancelled.

    ``key_file`` is the room's key (created, mode 0600, if it does not exist yet: a simulated
    room is provisioned at its first start); default ``run_dir/room.key``.

    A bad ``faults`` spec raises :class:`~hardware_sim.faults.FaultSpecError` (a ValueError)
    before anything is created, started or served.
    """
    specs = parse_faults(list(faults))
    key = ensure_key_file(key_file or run_dir / "room.key")
    log(f"wire sessions authenticated with {key}")
    server = SimServer(links, options, base_dir, run_dir, broker, log, key)
    armed: FaultInjector | None = None
    try:
        published, broker_url = await server.start()
        armed = schedule_faults(server, specs, log)
        on_ready(published, broker_url)
        await server.run()
    finally:
        if armed is not None:
            armed.cancel()
        await server.aclose()


def schedule_faults(
    server: SimServer, faults: Sequence[str | FaultSpec], log: Callable[[str], None]
) -> FaultInjector | None:
    """Arm ``--fault`` specs: device faults as in-process, link faults on the served links.

    Exam-relative times count from when the room starts serving; ``T+`` from the injector's
    reported start, as for ``fluoroctl run``.
    """
    if not faults:
        return None
    specs = [f if isinstance(f, FaultSpec) else parse_fault(f) for f in faults]
    injector = FaultInjector(server.room)
    injector.link_faults = server.link_fault_by_kind
    injector.log = log
    injector.apply(specs)
    return injector


__all__ = ["DEFAULT_DEVICE_IDS", "SimServer", "serve_room"]
