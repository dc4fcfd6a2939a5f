"""The installed distribution's version, one source for ``fluoroctl --version`` and the API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    """``fluoroctl``'s version from the installed metadata; ``0+unknown`` when not installed
    (a bare checkout on ``sys.path``), never an exception."""
    try:
        return version("fluoroctl")
    except PackageNotFoundError:
        return "0+unknown"
