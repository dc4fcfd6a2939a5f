"""``validate``: every problem of a protocol, room or patient file, as data.

The same checks as ``fluoroctl validate`` (schema, then for protocols the preflight against a
room, for rooms their links and patient), but collected instead of stopping at the first:
each :class:`Finding` names the file, line and field.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from drivers.config import (
    ConfigError,
    find_file_loader,
    line_of,
    load_yaml,
    parse_loc,
    validate_data,
)
from scheduler import preflight, run_inputs
from scheduler.protocol import Protocol
from scheduler.room import Room

from ._sources import RoomSource, room_from


@dataclass(frozen=True)
class Finding:
    """One problem in a file: an ``error`` (the file would be refused) or a ``warning``
    (e.g. a film that will probably be missed). ``str()`` is the CLI's one-line form."""

    severity: Literal["error", "warning"]
    path: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {ConfigError(self.path, self.line, self.field, self.message)}"


def validate(path: str | os.PathLike[str], room: RoomSource | None = None) -> list[Finding]:
    """Check the protocol, room or patient file at ``path``; ``[]`` when it is clean.

    Protocols are also checked against ``room`` (a path, a shipped name or a model; default:
    the built-in simulator): injector limits, device ranges, dose limits, timeline. A
    ``room`` that cannot be loaded raises :class:`~drivers.config.ConfigError`: it is the
    yardstick, not the file under test.
    """
    file = Path(path)
    try:
        data, node = load_yaml(file)
    except ConfigError as exc:
        return [_from_error(exc)]
    if isinstance(data, dict) and "protocol" in data:
        yardstick = room_from(room).model
        return _checked(lambda: _protocol(file, data, node, yardstick))
    if isinstance(data, dict) and "room" in data:
        return _checked(lambda: _room(file, data, node))
    if isinstance(data, dict):
        for key in data:
            loader = find_file_loader(str(key))
            if loader is not None:
                return _checked(functools.partial(_loaded, loader, file))
    return [
        Finding(
            "error",
            file,
            1 if data is not None else None,
            "",
            "not a fluoroctl file: expected a top-level 'protocol:', 'room:' or 'patient:' key",
        )
    ]


def _protocol(file: Path, data: Any, node: yaml.Node | None, room: Room) -> list[Finding]:
    protocol = validate_data(file, data, node, Protocol, "protocol")
    return _located(file, node, preflight.preflight(protocol, room))


def _room(file: Path, data: Any, node: yaml.Node | None) -> list[Finding]:
    checked = validate_data(file, data, node, Room, "room")
    found = _located(file, node, run_inputs.check_room(checked))
    if not any(f.severity == "error" for f in found):
        run_inputs.check_patient(None, checked, file)  # the simulator room's patient file
    return found


def _loaded(load: Callable[[Path], object], file: Path) -> list[Finding]:
    """A file kind another package owns (``patient:``): its loader raises or it is clean."""
    load(file)
    return []


def _located(
    file: Path, node: yaml.Node | None, findings: Iterable[preflight.Finding]
) -> list[Finding]:
    return [
        Finding(
            f.severity,
            file,
            None if node is None else line_of(node, parse_loc(f.field))[0],
            f.field,
            f.message,
        )
        for f in findings
    ]


def _checked(check: Callable[[], list[Finding]]) -> list[Finding]:
    try:
        return check()
    except ConfigError as exc:
        return [_from_error(exc)]


def _from_error(exc: ConfigError) -> Finding:
    return Finding("error", Path(exc.path), exc.line, exc.field, exc.message)
