"""Where the shipped configuration lives: the checkout's configs/, else the wheel's copy.

From a checkout (an editable install, the tests) configs/ and docs/ are read where they are,
so an edit shows at once. An installed wheel carries copies in ``scheduler/_data/`` (the
build step in setup.py; docs/decisions/0011-configs-in-the-wheel.md), found with
:mod:`importlib.resources`, so ``fluoroctl run ivu-standard`` works from any directory.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

#: Inside the installed package: configs/{rooms,protocols,patients}/ and schemas/.
PACKAGE_DATA = "_data"

#: Suffixes that mark an argument as a file name rather than a bare name such as ``normal``.
YAML_SUFFIXES = (".yaml", ".yml")


def checkout_root() -> Path | None:
    """The repository root when this package runs from a checkout, else None.

    A checkout is recognised by its pyproject.toml and configs/ beside the packages; an
    installed package's parent is site-packages, which has neither.
    """
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "configs").is_dir():
        return root
    return None


def installed_data() -> Path:
    """``scheduler/_data`` of the installed package (a directory on disk for a wheel)."""
    return Path(str(files(__package__ or "scheduler") / PACKAGE_DATA))


#: The directory that holds configs/: the checkout when running from one, else the wheel's
#: package data. Bare names (``--patient normal``, ``fluoroctl run ivu-standard``) resolve
#: under ``CONFIG_BASE / "configs"``.
CONFIG_BASE: Path = checkout_root() or installed_data()

#: Older name of :data:`CONFIG_BASE`, still imported by scheduler.compose and .resume; it is
#: the directory holding configs/, which is the repository root only in a checkout.
PROJECT_ROOT = CONFIG_BASE


def shipped_dir(kind: str) -> Path:
    """``configs/<kind>`` (rooms, protocols, patients) as shipped with this fluoroctl."""
    return CONFIG_BASE / "configs" / kind


def schema_dir() -> Path:
    """Where the published JSON Schemas are: docs/ in a checkout, ``_data/schemas`` installed."""
    root = checkout_root()
    return root / "docs" if root is not None else installed_data() / "schemas"


def default_room_path() -> Path:
    """configs/rooms/simulator.yaml in the working directory, else the shipped one."""
    local = Path("configs/rooms/simulator.yaml")
    return local if local.exists() else shipped_dir("rooms") / "simulator.yaml"


def is_bare_name(text: str) -> bool:
    """``ivu-standard`` is a name; ``ivu-standard.yaml`` and ``./ivu-standard`` are paths."""
    has_dir = "/" in text or os.sep in text
    return not has_dir and Path(text).suffix not in YAML_SUFFIXES


def resolve_config(kind: str, text: str) -> Path:
    """A config file argument: a path as given, or a bare name looked up by ``kind``.

    A bare name (see :func:`is_bare_name`) that is not itself a file means
    ``configs/<kind>/<name>.yaml`` in the working directory, else the shipped one. Anything
    else, and a name found in neither place, comes back unchanged, so the file's loader
    reports it the usual way (one line naming the file).
    """
    given = Path(text)
    if not is_bare_name(text) or given.exists():
        return given
    for base in (Path("configs") / kind, shipped_dir(kind)):
        for suffix in YAML_SUFFIXES:
            found = base / f"{text}{suffix}"
            if found.is_file():
                return found
    return given


def protocol_path(text: str) -> Path:
    """argparse ``type=`` for a protocol: a path, or a name such as ``ivu-standard``."""
    return resolve_config("protocols", text)


def room_path(text: str) -> Path:
    """argparse ``type=`` for a room: a path, or a name such as ``sim-links``."""
    return resolve_config("rooms", text)
