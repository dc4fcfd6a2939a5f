"""A device's authenticated sessions and its control lease (docs/security.md).

What device firmware keeps about the hosts talking to it: at most a few sessions (one per
``link.hello``/``link.auth`` handshake), each with its keys, replay window and the time its last
authenticated frame arrived; and the **control lease**, held by at most one session. Only the
lease holder's requests may change the device's state; other sessions observe (read-only
commands). The lease is taken when a ``control`` session is authenticated, renewed by every
authenticated frame its host sends (heartbeats every 200 ms), and ends when the host releases it
(``link.release``) or falls silent for the loss bound (the endpoint then enters SAFE).

A second host asking for control while the lease is alive is refused. A host that reconnects
(same ``host`` id, a new session) takes its own lease over: the id is not a credential (every
key holder is trusted alike), only continuity, so a driver's reconnect after a dropped cable
does not lock it out of its own exam.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.wire import Frame, Scalar, Status
from drivers.wire.keys import RoomKey
from drivers.wire.session import DeviceHandshakes, HandshakeError, Role, Session, Verdict

MAX_SESSIONS = 4
HANDSHAKE_COMMANDS = frozenset({"link.hello", "link.auth"})
#: Commands every authenticated session may send (they change nothing on the device).
READ_ONLY_LINK = frozenset({"link.ping", "link.bulk_resend", "link.release"})

Reply = tuple[Status, Mapping[str, Scalar]]


@dataclass(slots=True)
class _Peer:
    session: Session
    last_rx: float


class SessionTable:
    def __init__(self, key: RoomKey, device_id: int) -> None:
        self._handshakes = DeviceHandshakes(key, device_id)
        self._peers: dict[int, _Peer] = {}
        self.controller: Session | None = None

    @property
    def sessions(self) -> list[Session]:
        """Every open session, the controller's first (what the device sends goes to each)."""
        out = [p.session for p in self._peers.values()]
        out.sort(key=lambda s: s is not self.controller)
        return out

    def verify(self, frame: Frame, now: float) -> tuple[Session | None, Verdict]:
        auth = frame.auth
        if auth is None:
            return None, Verdict.UNAUTHENTICATED
        peer = self._peers.get(auth.sid)
        if peer is None:
            return None, Verdict.FOREIGN
        verdict = peer.session.check(auth)
        if verdict is Verdict.OK:
            peer.last_rx = now
            return peer.session, verdict
        return None, verdict

    def hello(self, args: Mapping[str, Scalar]) -> Reply:
        try:
            return Status.OK, self._handshakes.hello(dict(args), set(self._peers))
        except HandshakeError as exc:
            return Status.BAD_ARG, {"message": f"link.hello: {exc}"}

    def auth(self, args: Mapping[str, Scalar], now: float) -> tuple[Reply, Session | None]:
        """The reply to ``link.auth`` and the session to seal it with (None: send it plain)."""
        try:
            session = self._handshakes.auth(dict(args))
        except HandshakeError as exc:
            return (Status.BAD_ARG, {"fault": "auth", "message": f"link.auth: {exc}"}), None
        holder = self.controller
        if session.role is Role.CONTROL and holder is not None and holder.host != session.host:
            message = f"control is held by host {holder.host} (session {holder.sid:08x})"
            return (Status.BAD_STATE, {"fault": "control_held", "message": message}), session
        if len(self._peers) >= MAX_SESSIONS and not self._evict_observer():
            message = f"{MAX_SESSIONS} sessions open"
            return (Status.BUSY, {"fault": "sessions_full", "message": message}), session
        if session.role is Role.CONTROL:
            if holder is not None:  # the same host again: its old session ends
                self._peers.pop(holder.sid, None)
            self.controller = session
        self._peers[session.sid] = _Peer(session, now)
        return (Status.OK, {"role": session.role.value, "session": session.sid}), session

    def may(self, session: Session, command: str, read_only: frozenset[str]) -> bool:
        return session is self.controller or command in read_only or command in READ_ONLY_LINK

    def release(self, session: Session) -> None:
        self._peers.pop(session.sid, None)
        if session is self.controller:
            self.controller = None

    def drop_controller(self) -> Session | None:
        """The controller fell silent: its session and lease end. Returns it."""
        holder, self.controller = self.controller, None
        if holder is not None:
            self._peers.pop(holder.sid, None)
        return holder

    def expire_observers(self, now: float, bound: float) -> int:
        stale = [
            sid
            for sid, p in self._peers.items()
            if p.session is not self.controller and now - p.last_rx > bound
        ]
        for sid in stale:
            del self._peers[sid]
        return len(stale)

    def reset(self) -> None:
        """Forget every session (the firmware restarted)."""
        self._peers.clear()
        self.controller = None

    def _evict_observer(self) -> bool:
        for sid, peer in self._peers.items():
            if peer.session is not self.controller:
                del self._peers[sid]
                return True
        return False
