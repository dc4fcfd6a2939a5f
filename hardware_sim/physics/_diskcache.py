"""The physics tables a simulated room computes at start, kept on disk between processes.

Tube spectra (SpekPy) and elemental attenuation (xraydb) are pure functions of their arguments
and of the library's version, but each process that needs them pays for importing the
libraries (≈ 2 s of CPU together, SciPy and SpekPy's data tables) and for the spectrum model.
Every ``fluoroctl run``, ``sim serve`` and ``resume`` is a new process, so the results are kept
on disk, keyed by the table, its arguments and the library's version, and read back exactly
(``.npy``, bit for bit): a process whose tables are all on disk never imports either library.

Where: ``$FLUOROCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/fluoroctl``, else
``~/.cache/fluoroctl``; under ``physics-v1/TABLE/``. Deleting it is always safe. A cache that
cannot be written (a read-only home) is skipped; an entry that cannot be read is computed
again and replaced. Entries are written to a temporary name and renamed, so processes that
share the folder (parallel tests, a room and its rehearsal) never see half an entry.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

P = ParamSpec("P")
Arrays = TypeVar("Arrays", bound="npt.NDArray[Any] | tuple[npt.NDArray[Any], ...]")

#: bump when the layout of an entry changes
LAYOUT = "physics-v1"


def cache_root() -> Path:
    """The folder the tables are kept in (see the module docstring)."""
    explicit = os.environ.get("FLUOROCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "fluoroctl"


@functools.cache
def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def disk_cached(table: str, library: str) -> Callable[[Callable[P, Arrays]], Callable[P, Arrays]]:
    """Keep ``fn``'s result (an array or a tuple of arrays) on disk, keyed by ``table``, the
    call's arguments (their ``repr``) and ``library``'s installed version."""

    def wrap(fn: Callable[P, Arrays]) -> Callable[P, Arrays]:
        @functools.wraps(fn)
        def cached(*args: P.args, **kwargs: P.kwargs) -> Arrays:
            key = repr((table, _version(library), args, sorted(kwargs.items())))
            name = hashlib.sha256(key.encode()).hexdigest()[:40] + ".npy"
            path = cache_root() / LAYOUT / table / name
            found = _read(path)
            if found is not None:
                return found  # type: ignore[return-value]
            value = fn(*args, **kwargs)
            _write(path, value)
            return value

        return cached

    return wrap


def _read(path: Path) -> npt.NDArray[Any] | tuple[npt.NDArray[Any], ...] | None:
    try:
        with path.open("rb") as f:
            stacked: npt.NDArray[Any] = np.load(f, allow_pickle=False)
            parts = int(np.load(f, allow_pickle=False))
    except (OSError, ValueError, EOFError):
        return None
    if parts == 0:
        stacked.setflags(write=False)
        return stacked
    out = tuple(np.array(part) for part in stacked[:parts])
    for part in out:
        part.setflags(write=False)
    return out


def _write(path: Path, value: npt.NDArray[Any] | tuple[npt.NDArray[Any], ...]) -> None:
    # A tuple is stored as one stacked array (its parts have one length here) and its count;
    # a lone array with a count of 0.
    if isinstance(value, tuple):
        try:
            stacked, parts = np.stack([np.asarray(v) for v in value]), len(value)
        except ValueError:
            return  # parts of different shapes: not kept
    else:
        stacked, parts = np.asarray(value), 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError:
        return  # nowhere to keep it: computed again next time
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, stacked, allow_pickle=False)
            np.save(f, np.int64(parts), allow_pickle=False)
        os.replace(tmp, path)
    except (OSError, ValueError):
        Path(tmp).unlink(missing_ok=True)
