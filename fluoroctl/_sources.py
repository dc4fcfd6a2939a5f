"""What a protocol, room or patient argument names: a path, a shipped name or a loaded model.

Paths are files (``str`` with a ``/`` or a ``.yaml`` suffix, or any ``os.PathLike``); a bare
word is a file shipped with fluoroctl (``configs/<kind>/<name>.yaml``). Models are used as
given. The path is kept beside the model because the CLI's messages and the exam record name
the file: a model given directly is named ``<protocol NAME>`` / ``<room NAME>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from drivers.config import ConfigError
from scheduler.paths import default_room_path
from scheduler.paths import shipped_dir as _shipped_dir
from scheduler.protocol import Protocol
from scheduler.protocol import load_protocol as _load_protocol_file
from scheduler.room import Room
from scheduler.room import load_room as _load_room_file

#: ``protocol=`` and friends: a path, a shipped name or a loaded model
PathOrName = str | os.PathLike[str]
ProtocolSource = PathOrName | Protocol
RoomSource = PathOrName | Room


def shipped_dir(kind: str) -> Path:
    """Where fluoroctl's own ``configs/<kind>`` files are (protocols, rooms, patients): the
    checkout's, or the copy an installed wheel carries."""
    return _shipped_dir(kind)


def shipped_names(kind: str) -> list[str]:
    return sorted(p.stem for p in shipped_dir(kind).glob("*.yaml"))


def is_bare_name(value: PathOrName) -> bool:
    """A word such as ``ivu-standard``: not a PathLike, no directory part, no YAML suffix."""
    if not isinstance(value, str):
        return False
    candidate = Path(value)
    return candidate.suffix not in (".yaml", ".yml") and candidate.parent == Path(".")


def resolve_path(value: PathOrName, kind: str) -> Path:
    """The file ``value`` names; a bare name must be shipped (else one-line ConfigError)."""
    if not is_bare_name(value):
        return Path(value)
    assert isinstance(value, str)
    path = shipped_dir(kind) / f"{value}.yaml"
    if not path.is_file():
        known = ", ".join(shipped_names(kind)) or "none"
        raise ConfigError(
            value,
            None,
            "",
            f"no shipped {kind[:-1]} named {value!r} (shipped: {known}; or give a path)",
        )
    return path


M = TypeVar("M", Protocol, Room)


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A loaded model and the file it is named by in messages and the exam record."""

    path: Path
    model: M


def protocol_from(source: ProtocolSource) -> Loaded[Protocol]:
    if isinstance(source, Protocol):
        return Loaded(Path(f"<protocol {source.name}>"), source)
    path = resolve_path(source, "protocols")
    return Loaded(path, _load_protocol_file(path))


def room_from(source: RoomSource | None) -> Loaded[Room]:
    """``None`` is the built-in simulator room (as for ``fluoroctl run`` without ``--room``)."""
    if isinstance(source, Room):
        return Loaded(Path(f"<room {source.name}>"), source)
    path = default_room_path() if source is None else resolve_path(source, "rooms")
    return Loaded(path, _load_room_file(path))


def load_protocol(source: PathOrName) -> Protocol:
    """A protocol file (a path or a shipped name such as ``"ivu-standard"``), validated.

    Bad input raises :class:`~drivers.config.ConfigError` naming the file, line and field.
    """
    return protocol_from(source).model


def load_room(source: PathOrName | None = None) -> Room:
    """A room file (a path or a shipped name such as ``"simulator"``; default: the built-in
    simulator room as ``fluoroctl run`` picks it), validated."""
    return room_from(source).model


def patient_option(patient: PathOrName | None) -> str | None:
    """The simulator's ``patient`` option: a bare scenario name as given, a path made
    absolute from the caller's working directory (the simulator would otherwise read a
    relative path from the room's configs folder)."""
    if patient is None:
        return None
    if not isinstance(patient, str | os.PathLike):
        raise TypeError(
            "patient= takes a scenario name or a path to a patient file, not "
            f"{type(patient).__name__}: the exam folder records the patient by file so that "
            "`resume` can load it again"
        )
    if is_bare_name(patient):
        return str(patient)
    return str(Path(patient).absolute())
