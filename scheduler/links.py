"""Link URLs as a run sees them: ``${name}`` filled in from ``sim serve``'s endpoints file and
host-less ``mqtt://`` links pointed at the broker (``--broker``, else the room's, else the one
``sim serve`` started).

A broker URL may be ``mqtt+tls://HOST:PORT?ca=..&cert=..&key=..&username=..&password_file=..``
(``sim serve``'s own broker always is): a host-less link then takes its scheme and options too.
The endpoints file holds paths to credentials, never a password.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers.links._mqtt_url import link_on_broker

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
ENDPOINTS_VERSION = 1


class LinkConfigError(ValueError):
    """A link cannot be resolved; the message says which link and what to do."""


@dataclass(frozen=True)
class Endpoints:
    """What ``fluoroctl sim serve`` tells a run: where its devices are and how fast time runs."""

    path: Path
    links: dict[str, str] = field(default_factory=dict)
    broker: str | None = None
    time_scale: float = 1.0
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": ENDPOINTS_VERSION,
            "pid": self.pid,
            "time_scale": self.time_scale,
            "broker": self.broker,
            "links": self.links,
        }


def load_endpoints(path: Path) -> Endpoints:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LinkConfigError(
            f"{path}: no endpoints file; start the simulated room first "
            "(fluoroctl sim serve --room ROOM) or pass --endpoints FILE"
        ) from None
    except json.JSONDecodeError as exc:
        raise LinkConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict) or raw.get("version") != ENDPOINTS_VERSION:
        raise LinkConfigError(f"{path}: not a version-{ENDPOINTS_VERSION} sim serve endpoints file")
    links = raw.get("links") or {}
    return Endpoints(
        path=path,
        links={str(k): str(v) for k, v in links.items()},
        broker=raw.get("broker"),
        time_scale=float(raw.get("time_scale") or 1.0),
        pid=raw.get("pid"),
    )


def wait_for_endpoints(
    path: Path, timeout_s: float = 60.0, on_wait: Callable[[str], None] | None = None
) -> Endpoints:
    """Load the endpoints file, waiting for a ``sim serve`` that is still starting.

    A file whose ``sim serve`` process is gone is stale: refused, not used.
    """
    deadline = time.monotonic() + timeout_s
    told = False
    while not path.exists() and time.monotonic() < deadline:
        if on_wait is not None and not told:
            on_wait(f"waiting up to {timeout_s:.0f} s for sim serve to write {path}")
            told = True
        time.sleep(0.2)
    endpoints = load_endpoints(path)
    if endpoints.pid is not None and not _alive(endpoints.pid):
        raise LinkConfigError(
            f"{path}: stale endpoints file: the sim serve that wrote it (pid {endpoints.pid}) "
            "is not running; start it again"
        )
    return endpoints


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def write_endpoints(endpoints: Endpoints) -> None:
    """Atomically, so a run polling for the file never reads half of it."""
    endpoints.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = endpoints.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(endpoints.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(endpoints.path)


def placeholders(url: str) -> list[str]:
    return _PLACEHOLDER.findall(url)


def substitute(role: str, url: str, values: dict[str, str], source: str) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            raise LinkConfigError(
                f"{role} link {url}: ${{{name}}} is not in {source} (it has: {known})"
            )
        return values[name]

    return _PLACEHOLDER.sub(one, url)


def with_broker(role: str, url: str, broker: str | None) -> str:
    """Give a host-less ``mqtt:///prefix`` link the broker's scheme, host, port and options
    (TLS files, user, password file); LinkConfigError, one line, for a bad broker URL."""
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] != "mqtt" or parts.netloc:
        return url
    if broker is None:
        raise LinkConfigError(
            f"{role} link {url} names no broker: give one with --broker mqtt://HOST:PORT, the "
            "room file's `broker`, or run `fluoroctl sim serve`, which starts one"
        )
    try:
        return link_on_broker(url, broker)
    except ValueError as exc:
        raise LinkConfigError(f"{role} link: {exc}") from None


def resolve_links(
    links: dict[str, str],
    *,
    endpoints: Endpoints | None,
    broker: str | None,
    room_broker: str | None,
) -> dict[str, str]:
    values = endpoints.links if endpoints else {}
    source = str(endpoints.path) if endpoints else "any endpoints file (none given)"
    chosen_broker = broker or room_broker or (endpoints.broker if endpoints else None)
    return {
        role: with_broker(role, substitute(role, url, values, source), chosen_broker)
        for role, url in links.items()
    }
