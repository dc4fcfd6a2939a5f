"""The host's half of a wire session: the handshake and the accounting of dropped frames.

``WireClient`` owns the link and the reader; this class owns what the session layer decides:
it runs ``link.hello``/``link.auth`` through an ``exchange`` function the client provides,
holds the established :class:`~drivers.wire.session.Session`, and turns frames that fail
verification into counts and into *security reports* for the client's listeners (the scheduler
journals them as ``security`` lines). Reports are coalesced: the first of a kind at once, then
at most one per kind per second with the count, so a flood of forged frames cannot flood the
journal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..errors import AuthenticationFailed, ControlRefused, DeviceLost, ProtocolMismatch
from .codec import PROTOCOL_VERSION, Scalar, Status
from .keys import RoomKey
from .session import HandshakeError, HostHandshake, Role, Session, Verdict

log = logging.getLogger(__name__)

SecurityCallback = Callable[[str, int, str], None]
"""``(kind, count, detail)``: frames dropped since the last report of this kind."""
Exchange = Callable[
    [str, Mapping[str, Scalar], bool], Awaitable[tuple[Status, Mapping[str, Scalar]]]
]
"""``exchange(command, fields, sealed)``: one (plain) handshake request; its reply's status and
fields (``sealed``: the reply must be authenticated with the new session)."""

REPORT_EVERY_S: Final = 1.0
_KINDS: Final = {
    Verdict.UNAUTHENTICATED: "unauthenticated",
    Verdict.BAD_TAG: "bad_tag",
    Verdict.REPLAY: "replay",
    Verdict.STALE: "stale",
}


@dataclass(slots=True)
class SecurityStats:
    unauthenticated: int = 0
    bad_tags: int = 0
    replays: int = 0
    foreign_sessions: int = 0  # other hosts' frames on a shared medium: not an attack
    sessions: int = 0


@dataclass(slots=True)
class _Pending:
    count: int = 0
    detail: str = ""
    last_report: float = -1e18


@dataclass
class HostSecurity:
    key: RoomKey
    device: int
    role: Role
    host: str
    name: str
    stats: SecurityStats = field(default_factory=SecurityStats)
    session: Session | None = None
    peer_version: int | None = None
    _callbacks: list[SecurityCallback] = field(default_factory=list)
    _pending: dict[str, _Pending] = field(default_factory=dict)

    async def open(self, exchange: Exchange, url: str) -> Mapping[str, Scalar]:
        """Run the handshake; the device's ``link.auth`` reply fields (its ``state``...).

        Raises :class:`ProtocolMismatch`, :class:`AuthenticationFailed`, :class:`ControlRefused`
        (none worth retrying at once) or :class:`DeviceLost` (no reply: retry on a new link).
        """
        self.session = None
        hs = HostHandshake(self.key, self.device, self.role, self.host)
        try:
            status, reply = await exchange("link.hello", hs.hello(), False)
        except DeviceLost:
            self.check_version()  # an old device NAKs what it cannot read, or beats in v1
            raise
        self.check_version()
        if status is not Status.OK:
            raise self._refused("link.hello", status, reply, url)
        try:
            auth_fields, candidate = hs.answer(reply)
        except HandshakeError as exc:
            raise AuthenticationFailed(self.name, "link.hello", str(exc), link=url) from None
        self.session = candidate  # the link.auth reply is sealed with it
        try:
            status, reply = await exchange("link.auth", auth_fields, True)
        except BaseException:
            self.session = None
            raise
        if status is not Status.OK:
            self.session = None
            raise self._refused("link.auth", status, reply, url)
        self.stats.sessions += 1
        return reply

    def check_version(self) -> None:
        if self.peer_version is not None and self.peer_version != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                self.name,
                "link.hello",
                f"the device speaks wire protocol version {self.peer_version}; this host "
                f"speaks version {PROTOCOL_VERSION} (authenticated sessions, "
                "docs/wire-protocol.md §7): update the device's firmware or driver",
            )

    def _refused(
        self, command: str, status: Status, reply: Mapping[str, Scalar], url: str
    ) -> DeviceLost:
        message = str(reply.get("message") or status.name)
        fault = reply.get("fault")
        if fault == "control_held":
            return ControlRefused(self.name, command, message, link=url)
        if fault == "auth" or command == "link.auth":
            return AuthenticationFailed(
                self.name,
                command,
                f"{message} (this host's {self.key}: does the device have the same key?)",
                link=url,
            )
        return DeviceLost(self.name, command, f"refused: {message}", link=url)

    # --- verification accounting ----------------------------------------------------------

    def subscribe(self, callback: SecurityCallback) -> Callable[[], None]:
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def dropped(self, verdict: Verdict, what: str, now: float) -> None:
        """A received frame failed verification (``what``: its type and seq)."""
        stats = self.stats
        if verdict is Verdict.FOREIGN:
            stats.foreign_sessions += 1
            return
        if verdict is Verdict.UNAUTHENTICATED:
            stats.unauthenticated += 1
        elif verdict is Verdict.BAD_TAG:
            stats.bad_tags += 1
        else:
            stats.replays += 1
        kind = _KINDS[verdict]
        pending = self._pending.setdefault(kind, _Pending())
        pending.count += 1
        pending.detail = f"{what} from the {self.name} link dropped ({kind})"
        if now - pending.last_report >= REPORT_EVERY_S:
            self._report(kind, pending, now)

    def flush(self, now: float) -> None:
        """Report what was coalesced (called every heartbeat period)."""
        for kind, pending in self._pending.items():
            if pending.count and now - pending.last_report >= REPORT_EVERY_S:
                self._report(kind, pending, now)

    def _report(self, kind: str, pending: _Pending, now: float) -> None:
        count, pending.count, pending.last_report = pending.count, 0, now
        log.warning("%s: %d frame(s): %s", self.name, count, pending.detail)
        for cb in tuple(self._callbacks):
            try:
                cb(kind, count, pending.detail)
            except Exception:
                log.exception("security listener %r failed", cb)
