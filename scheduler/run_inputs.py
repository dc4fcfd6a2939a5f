"""What `fluoroctl run` checks besides the protocol: the room's links, the patient, the exam
folder — all before anything is created or opened."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from urllib.parse import urlsplit

from drivers.backends import scheme_of
from drivers.config import ConfigError, find_file_loader, line_of, load_yaml

from .preflight import Finding, _error, preflight, raise_on_errors, warnings_of
from .protocol import (
    Protocol,
)
from .room import Room

# -- the room's links ------------------------------------------------------------------------
#: import name -> the package to install (the links extra of pyproject.toml)
_PACKAGES = {
    "aiomqtt": "aiomqtt",
    "serial": "pyserial",
    "serial_asyncio_fast": "pyserial-asyncio-fast",
    "usb": "pyusb",
    "pynetdicom": "pynetdicom",
}
_WIRE_SCHEMES = ("tcp", "mqtt", "usb", "serial")


def check_room(room: Room) -> list[Finding]:
    """The room's links can be served: a backend is installed for every scheme (a room may mix
    backends, one per device), its transports' packages import, and wire link URLs parse (those with
    ``${...}`` or a broker to fill in are checked when the run resolves them). Nothing is
    opened. Fields are paths in the room file."""
    out: list[Finding] = []
    chosen: dict[str, tuple[EntryPoint, list[str]]] = {}
    for role, link in room.links.items():
        scheme = scheme_of(link)
        found = list(entry_points(group="fluoroctl.backends", name=scheme.split("+", 1)[0]))
        if not found:
            known = sorted(ep.name for ep in entry_points(group="fluoroctl.backends"))
            out.append(
                _error(
                    ("room", "devices", role),
                    f"unknown link scheme {scheme!r} in {link} "
                    f"(installed backends: {', '.join(known) or 'none'})",
                )
            )
            continue
        chosen.setdefault(found[0].value, (found[0], []))[1].append(role)
    if out:
        return out
    for _value, (ep, roles) in chosen.items():
        try:
            ep.load()
        except ModuleNotFoundError as exc:
            module = (exc.name or "").split(".", 1)[0]
            package = _PACKAGES.get(module, module)
            scheme = scheme_of(room.links[roles[0]])
            return [
                _error(
                    ("room", "devices", roles[0]),
                    f"{scheme}:// links need the Python package {package!r}, which is not "
                    f"installed: install {package} (pip install {package}, or "
                    "pip install -e '.[links]')",
                )
            ]
        except ImportError as exc:
            return [_error(("room", "devices", roles[0]), f"cannot load the link backend: {exc}")]
    from drivers.links import load_transport, transports

    for role, link in room.links.items():
        base = scheme_of(link).split("+", 1)[0]
        if base in transports():
            try:
                load_transport(base)  # imports the transport's library only; opens nothing
            except ImportError as exc:  # TransportUnavailable: one line naming the package
                return [_error(("room", "devices", role), str(exc))]
    for role, link in room.links.items():
        scheme = scheme_of(link)
        if scheme.split("+", 1)[0] not in _WIRE_SCHEMES or "${" in link:
            continue
        if scheme.split("+", 1)[0] == "mqtt" and not urlsplit(link).netloc:
            continue  # the broker is filled in at run time
        from drivers.links import open_link  # after the import check above: needs the extras

        try:
            open_link(link)  # parses the URL only; nothing is opened
        except ValueError as exc:
            out.append(_error(("room", "devices", role), str(exc)))
    return out


# -- run's other inputs ----------------------------------------------------------------------
def check_patient(patient: str | None, room: Room, room_path: Path) -> None:
    """The simulated patient a run will load (``--patient``, else the in-process simulator
    room's ``options.patient``) exists and is valid, checked with the simulator's own loader.

    A bare name means ``configs/patients/<name>.yaml`` beside the room's configs (the rule of
    ``hardware_sim.scenario.resolve_scenario_path``, which the simulator applies).
    """
    source = "--patient"
    if patient is None:
        if any(scheme_of(link) != "sim" for link in room.links.values()):
            return  # a wire room's patient lives in `sim serve`, which checks it there
        patient = str(room.options.get("patient", "normal"))
        source = "room.options.patient"
    loader = find_file_loader("patient")
    if loader is None:
        raise ConfigError(source, None, "", "no simulator installed to load patient scenarios")
    from .compose import config_base_dir

    base = config_base_dir(room_path)
    candidate = Path(patient)
    bare = candidate.suffix not in (".yaml", ".yml") and candidate.parent == Path(".")
    if bare:
        path = base / "configs" / "patients" / f"{patient}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (base / "configs" / "patients").glob("*.yaml"))
            message = (
                f"unknown patient scenario {patient!r} "
                f"(known: {', '.join(known) or 'none'}; or give a path to a .yaml file)"
            )
            if source == "--patient":
                raise ConfigError(source, None, "", message)
            raise ConfigError(room_path, _room_line(room_path), source, message)
    else:
        path = candidate if candidate.is_absolute() else base / candidate
        if source != "--patient" and not path.is_file():
            raise ConfigError(
                room_path, _room_line(room_path), source, f"patient file {path} not found"
            )
    loader(path)  # a ConfigError names the patient file, line and field


def _room_line(room_path: Path) -> int | None:
    try:
        _data, node = load_yaml(room_path)
    except ConfigError:
        return None
    return line_of(node, ("room", "options", "patient"))[0]


def check_out_dir(out: Path) -> None:
    """``--out`` can be created (or is a writable directory), checked without creating it."""

    def refuse(message: str) -> ConfigError:
        return ConfigError("--out", None, "", message)

    try:
        if out.is_symlink() and not out.exists():
            raise refuse(f"{out} is a dangling symbolic link")
        if out.exists():
            if not out.is_dir():
                raise refuse(f"{out} exists and is not a directory")
            if not os.access(out, os.W_OK | os.X_OK):
                raise refuse(f"{out} is not writable")
            return
        probe = out.absolute().parent
        while not probe.exists():
            probe = probe.parent
    except OSError as exc:
        raise refuse(f"cannot use {out}: {exc.strerror or exc}") from None
    if not probe.is_dir():
        raise refuse(f"cannot create {out}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise refuse(f"cannot create {out}: {probe} is not writable")


def check_run_inputs(
    protocol_path: Path,
    protocol: Protocol,
    room_path: Path,
    room: Room,
    *,
    patient: str | None,
    out_dir: Path,
    warn: Callable[[str], None],
) -> None:
    """All of ``fluoroctl run``'s input checks, before anything is created or opened.

    Raises :class:`ConfigError` for the first problem (the room's links, the protocol
    against the room, the patient, the output folder); only when there is none are the
    protocol's warnings handed to ``warn``, one line each.
    """
    raise_on_errors(check_room(room), room_path)
    findings = preflight(protocol, room)
    raise_on_errors(findings, protocol_path)
    check_patient(patient, room, room_path)
    check_out_dir(out_dir)
    for line in warnings_of(findings, protocol_path):
        warn(line)


__all__ = ["check_out_dir", "check_patient", "check_room", "check_run_inputs"]
