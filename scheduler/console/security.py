"""The console's access rules: a one-time token for a session cookie, a CSRF token on every
state-changing request, same-origin only, and the Host header of the bound address.

* ``GET /?token=T`` with the printed one-time token sets ``fluoro_console`` (HttpOnly,
  SameSite=Strict) and redirects; the token cannot be used again.
* every other route needs that cookie (401 without);
* every POST needs the session's CSRF token in ``X-CSRF-Token``, a JSON body, and no
  cross-site ``Origin`` / ``Sec-Fetch-Site`` (403): a form on another site can send none of
  these. No CORS header is ever sent, so no other origin can read a response.
* the Host header must name the bound address (a DNS-rebinding page is refused, 421).

A console other hosts reach (HTTPS, docs/console.md) also lets a browser log in at ``/login``
with the room's console password, derived from the room key (:func:`console_password`): whoever
holds the room's key file can print it (``fluoroctl keys console ROOM``). Failed logins are
limited: after :data:`MAX_FAILURES` within :data:`WINDOW_S` seconds every login is refused
for :data:`LOCKOUT_S` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .settings import ConsoleSettings

COOKIE = "fluoro_console"
#: failed logins tolerated within WINDOW_S before every login is refused for LOCKOUT_S
MAX_FAILURES, WINDOW_S, LOCKOUT_S = 5, 60.0, 60.0
_PASSWORD_LABEL = b"fluoroctl operator console login v1"


def console_password(room_secret: bytes) -> str:
    """The console's login password for a room key: 100 bits, in five groups of four
    (e.g. ``abcd-efgh-ijkl-mnop-qrst``). A new room key gives a new password."""
    mac = hmac.new(room_secret, _PASSWORD_LABEL, hashlib.sha256).digest()
    text = base64.b32encode(mac).decode().lower()[:20]
    return "-".join(text[i : i + 4] for i in range(0, 20, 4))


def _plain(password: str) -> str:
    """As typed or as printed: case, spaces and the group dashes do not matter."""
    return "".join(c for c in password.lower() if not c.isspace() and c != "-")


class LoginRefused(Exception):
    """Why a login was refused (wrong password, or too many failures: locked for a while)."""


@dataclass(frozen=True)
class Session:
    sid: str
    csrf: str
    who: str


class Gate:
    """Sessions of one console server."""

    def __init__(
        self, password: str | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.token = secrets.token_urlsafe(24)
        self._token_used = False
        #: the login password (a console other hosts reach); None: the one-time URL only
        self.password = password
        self._clock = clock
        self._failures: list[float] = []
        self._locked_until = 0.0
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.origins: set[str] = set()
        self.hosts: set[str] = set()

    def exchange(self, token: str, peer: str) -> Session | None:
        """The one-time token for a new session; None when wrong or already used."""
        with self._lock:
            if self._token_used or not hmac.compare_digest(token, self.token):
                return None
            self._token_used = True
            return self._new_session(f"from {peer}")

    def login(self, password: str, peer: str) -> Session:
        """A new session for the right password; :class:`LoginRefused` otherwise."""
        with self._lock:
            now = self._clock()
            if self.password is None:
                raise LoginRefused("this console has no password login (open the printed URL)")
            if now < self._locked_until:
                raise LoginRefused(
                    f"too many failed logins: try again in {self._locked_until - now:.0f} s"
                )
            if not hmac.compare_digest(_plain(password).encode(), _plain(self.password).encode()):
                self._failures = [t for t in self._failures if now - t < WINDOW_S] + [now]
                if len(self._failures) >= MAX_FAILURES:
                    self._locked_until, self._failures = now + LOCKOUT_S, []
                raise LoginRefused("wrong password")
            self._failures = []
            return self._new_session(f"from {peer} (password login)")

    def _new_session(self, where: str) -> Session:
        sid = secrets.token_urlsafe(24)
        session = Session(sid, secrets.token_urlsafe(24), f"session {sid[:6]} {where}")
        self._sessions[sid] = session
        return session

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        with self._lock:
            return self._sessions.get(cookie)

    def same_origin(self, origin: str | None, fetch_site: str | None) -> bool:
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return False
        return origin is None or origin in self.origins

    def csrf_ok(self, session: Session, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header, session.csrf)


def login_password(settings: ConsoleSettings, key_file: str | None) -> str | None:
    """The room's console password when its console serves HTTPS and the room has a key;
    None otherwise (one-time URL only). A key file that cannot be read is a one-line
    :class:`~drivers.wire.keys.KeyFileError`."""
    if not settings.tls or key_file is None:
        return None
    from drivers.wire.keys import load_key_file

    return console_password(load_key_file(Path(key_file)).secret)


def check_console(settings: ConsoleSettings, key_file: str | None) -> str | None:
    """Everything a console needs, checked before an exam starts: its certificate and key
    load (else :class:`~drivers.config.ConfigError`, one line), its password derives."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        from drivers.config import ConfigError

        from .tls import ConsoleTlsError, server_context

        try:
            server_context(settings.tls_cert, settings.tls_key)
        except ConsoleTlsError as exc:
            raise ConfigError(settings.tls_cert, None, "console.tls_cert", str(exc)) from None
    return login_password(settings, key_file)
