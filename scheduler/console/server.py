"""The console's web server (aiohttp), in a thread with its own event loop.

Routes (every one but the token exchange needs the session cookie; see :mod:`.security`):

* ``GET /`` the page; ``GET /app.js`` its script; ``GET /state`` the view as JSON;
* ``GET /events`` Server-Sent Events: ``line`` per journal line, then ``state`` (the whole
  view) per batch — a browser that falls behind gets the present, not a backlog;
* ``GET /image/NAME.png?center=&width=&size=`` an exam image rendered with that window
  (``size``: a thumbnail of at most that many pixels a side);
* ``GET /login``, ``POST /api/login`` ``{password}``: a console with HTTPS and the room's
  console password (docs/console.md) lets a browser log in without the one-time URL;
* ``POST /api/answer`` ``{prompt, confirmed}``; ``POST /api/control`` ``{action: pause |
  resume | abort}``; ``POST /api/request`` ``{action: skip | repeat | extra, step, reason}``.
  A read-only console (``fluoroctl console DIR``) refuses these (409).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .hub import ConsoleHub
from .operator import ConsoleOperator
from .page import APP_CSS, APP_JS, LOGIN_JS, LOGIN_PAGE, PAGE
from .render import render_png
from .security import COOKIE, Gate, LoginRefused, Session
from .settings import ConsoleSettings
from .tls import server_context

log = logging.getLogger(__name__)
SESSION = web.RequestKey("session", Session)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: what a console with password login serves before a session exists
_LOGIN_ROUTES = ("/login", "/login.js", "/app.css", "/api/login")
_IMAGE = re.compile(r"^[A-Za-z0-9._-]+\.dcm$")
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ConsoleServer:
    """Serves ``hub``'s view of the exam in ``exam_dir``; with ``operator``, its controls."""

    def __init__(
        self,
        hub: ConsoleHub,
        exam_dir: Path,
        operator: ConsoleOperator | None = None,
        settings: ConsoleSettings | None = None,
        *,
        password: str | None = None,
    ) -> None:
        self.hub, self.exam_dir, self.operator = hub, exam_dir, operator
        self.settings = settings or ConsoleSettings()
        if password is not None and not self.settings.tls:
            raise ValueError("a console password is only sent over HTTPS (tls_cert, tls_key)")
        #: HTTPS context (a console other hosts reach); checked before anything listens
        self._ssl = (
            server_context(self.settings.tls_cert, self.settings.tls_key)
            if self.settings.tls_cert is not None and self.settings.tls_key is not None
            else None
        )
        self.gate = Gate(password)
        self.url = ""
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopped: asyncio.Event | None = None

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> str:
        """Listen (in a daemon thread); returns the one-time URL to open."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="console", daemon=True
        )
        self._thread.start()
        ready.result(timeout=30)
        scheme = "https" if self._ssl is not None else "http"
        names = [f"[{n}]" if ":" in n else n for n in self.settings.names()]
        self.gate.hosts = {f"{n}:{self.port}" for n in names}
        self.gate.origins = {f"{scheme}://{h}" for h in self.gate.hosts}
        self.base_url = f"{scheme}://{names[0]}:{self.port}"
        self.url = f"{self.base_url}/?token={self.gate.token}"
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
        finally:
            loop.close()

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        self._stopped = asyncio.Event()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.host or None, self.settings.port, ssl_context=self._ssl
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        ready.set_result(None)
        await self._stopped.wait()
        for client in self.hub.clients:
            self.hub.disconnect(client)
        await self._runner.cleanup()

    # -- the app ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        # The guard wraps each route rather than being an aiohttp middleware: aiohttp keeps
        # every (handler, app) pair that ran middlewares in a process-wide cache, which would
        # hold this server, and through it the exam and its devices, for the process's life.
        app = web.Application()
        routes: tuple[tuple[str, str, Handler], ...] = (
            ("GET", "/", self._page),
            ("GET", "/login", self._login_page),
            ("GET", "/login.js", self._login_script),
            ("POST", "/api/login", self._login),
            ("GET", "/app.js", self._script),
            ("GET", "/app.css", self._style),
            ("GET", "/state", self._state),
            ("GET", "/events", self._events),
            ("GET", "/image/{name}.png", self._image),
            ("POST", "/api/answer", self._answer),
            ("POST", "/api/control", self._control),
            ("POST", "/api/request", self._request),
        )
        for method, path, handler in routes:
            app.router.add_route(method, path, functools.partial(self._guard, handler=handler))
        app.on_response_prepare.append(self._headers)
        return app

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every response, a refused or unknown route's too, carries the security headers."""
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        if self._ssl is not None:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")

    async def _guard(self, request: web.Request, *, handler: Handler) -> web.StreamResponse:
        if self.gate.hosts and request.host not in self.gate.hosts:
            return _text(421, "wrong host for this console")
        if request.path == "/" and "token" in request.query:
            return self._exchange(request)
        if request.method != "GET":
            origin, site = request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")
            if not self.gate.same_origin(origin, site):
                return _text(403, "cross-origin requests are refused")
            if request.content_type != "application/json":
                return _text(415, "send JSON")
        if self.gate.password is not None and request.path in _LOGIN_ROUTES:
            return await handler(request)
        session = self.gate.session(request.cookies.get(COOKIE))
        if session is None:
            if self.gate.password is not None and request.path == "/":
                return web.Response(status=303, headers={"Location": "/login"})
            return _text(401, "open the one-time URL fluoroctl printed to start a session")
        if request.method != "GET" and not self.gate.csrf_ok(
            session, request.headers.get("X-CSRF-Token")
        ):
            return _text(403, "missing or wrong CSRF token")
        request[SESSION] = session
        return await handler(request)

    def _set_session(self, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            session.sid,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=self._ssl is not None,
        )

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=LOGIN_PAGE, content_type="text/html")

    async def _login_script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=LOGIN_JS, content_type="application/javascript")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        peer = request.remote or "?"
        try:
            session = self.gate.login(str(body.get("password") or ""), peer)
        except LoginRefused as exc:
            log.warning("console: login from %s refused: %s", peer, exc)
            return web.json_response({"ok": False, "reason": str(exc)}, status=401)
        log.warning("console: %s", session.who)  # who opened the controls, for the host's log
        response = web.json_response({"ok": True})
        self._set_session(response, session)
        return response

    def _exchange(self, request: web.Request) -> web.StreamResponse:
        session = self.gate.exchange(request.query["token"], request.remote or "?")
        if session is None:
            return _text(403, "this one-time token is wrong or was already used")
        response = web.Response(status=303, headers={"Location": "/"})
        self._set_session(response, session)
        return response

    async def _page(self, request: web.Request) -> web.StreamResponse:
        session: Session = request[SESSION]
        return web.Response(text=PAGE.replace("{{CSRF}}", session.csrf), content_type="text/html")

    async def _script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=APP_JS, content_type="application/javascript")

    async def _style(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=APP_CSS, content_type="text/css")

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.hub.snapshot())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        client = self.hub.connect(asyncio.get_running_loop())
        try:
            await _send(response, "state", self.hub.snapshot())
            while True:
                lines = await client.take()
                if client.closed and not lines:
                    break
                for line in lines:
                    if line.get("kind") != "live":
                        await _send(response, "line", line)
                await _send(response, "state", {**self.hub.snapshot(), "dropped": client.dropped})
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.disconnect(client)
        return response

    async def _image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"] + ".dcm"
        path = self.exam_dir / name
        if not _IMAGE.match(name) or not path.is_file():
            return _text(404, "no such image")
        try:
            center = _float(request.query.get("center"))
            width = _float(request.query.get("width"))
            size = _size(request.query.get("size"))
        except ValueError:
            return _text(400, "center and width are numbers; size is 16 to 4096 pixels")
        png = await asyncio.to_thread(render_png, path, center, width, size)
        return web.Response(body=png, content_type="image/png")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise web.HTTPBadRequest(text="the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body is not a JSON object")
        return body

    def _controls(self) -> ConsoleOperator:
        if self.operator is None:
            raise web.HTTPConflict(text="this console is read-only (fluoroctl console)")
        return self.operator

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        who = request[SESSION].who
        why = self._controls().answer(int(body.get("prompt", 0)), bool(body["confirmed"]), who)
        return _result(why)

    async def _control(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        action = str(body.get("action"))
        if action not in ("pause", "resume", "abort"):
            return _text(400, "action is pause, resume or abort")
        fut = self._controls().control(action, request[SESSION].who)
        return _result(await asyncio.wrap_future(fut))

    async def _request(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        step = body.get("step")
        fut = self._controls().request(
            str(body.get("action")),
            None if step is None else str(step),
            str(body.get("reason") or ""),
            request[SESSION].who,
        )
        return _result(await asyncio.wrap_future(fut))


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


def _result(why: str | None) -> web.Response:
    if why is None:
        return web.json_response({"ok": True})
    return web.json_response({"ok": False, "reason": why}, status=409)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _size(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    size = int(value)  # type: ignore[arg-type]
    if not 16 <= size <= 4096:
        raise ValueError(size)
    return size


def _float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)
