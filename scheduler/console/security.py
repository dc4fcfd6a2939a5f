"""The console's access rules: a one-time token for a session cookie, a CSRF token on every
state-changing request, same-origin only, and the Host header of the bound address.

* ``GET /?token=T`` with the printed one-time token sets ``fluoro_console`` (HttpOnly,
  SameSite=Strict) and redirects; the token cannot be used again.
* every other route needs that cookie (401 without);
* every POST needs the session's CSRF token in ``X-CSRF-Token``, a JSON body, and no
  cross-site ``Origin`` / ``Sec-Fetch-Site`` (403): a form on another site can send none of
  these. No CORS header is ever sent, so no other origin can read a response.
* the Host header must name the bound address (a DNS-rebinding page is refused, 421).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass

COOKIE = "fluoro_console"


@dataclass(frozen=True)
class Session:
    sid: str
    csrf: str
    who: str


class Gate:
    """Sessions of one console server."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(24)
        self._token_used = False
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
            sid = secrets.token_urlsafe(24)
            session = Session(sid, secrets.token_urlsafe(24), f"session {sid[:6]} from {peer}")
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
