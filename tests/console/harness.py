"""An exam on the in-process simulator on virtual time, with the console attached, and an
HTTP client for it (session cookie, CSRF token) usable from another thread."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers import Clock, VirtualTimeEventLoop
from scheduler.compose import make_operator, open_devices
from scheduler.console import ConsoleOperator
from scheduler.console.hub import ConsoleHub
from scheduler.console.operator import feed
from scheduler.exam import ANONYMOUS, ExamResult, ExamRunner, RoomInfo, make_exam_info
from scheduler.protocol import Protocol, load_protocol
from scheduler.room import load_room

from ..exam.conftest import ROOT, WALL_ANCHOR

ROOM = ROOT / "configs/rooms/simulator.yaml"


def protocol(name: str) -> Protocol:
    return load_protocol(ROOT / f"configs/protocols/{name}.yaml")


@dataclass
class Exam:
    result: ExamResult
    out: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def run_exam(
    out: Path,
    proto: Protocol,
    *,
    console: ConsoleOperator | None = None,
    hub: ConsoleHub | None = None,
    on_runner: Callable[[ExamRunner], None] | None = None,
) -> Exam:
    """Run ``proto`` on virtual time; with ``console`` as the operator (attached, served),
    else the room's scripted operator (its events fed to ``hub`` when given)."""
    room = load_room(ROOM)
    out.mkdir(parents=True)
    loop = VirtualTimeEventLoop()

    async def go() -> ExamResult:
        clock = Clock.for_running_loop(WALL_ANCHOR)
        devices = await open_devices(room, clock, ROOT, {})
        try:
            patient = RoomInfo.of(devices).patient or ANONYMOUS
            exam = make_exam_info(proto, room, patient, clock.wall_now())
            operator = console if console is not None else make_operator(room, clock, "scripted")
            runner = ExamRunner(proto, room, devices, clock, operator, out, exam)
            if console is not None:
                console._clock = clock
                console.attach(runner)
            elif hub is not None:
                feed(runner.bus, hub)
            if on_runner is not None:
                on_runner(runner)
            return await runner.run()
        finally:
            await devices.aclose()

    try:
        result = loop.run_until_complete(go())
    finally:
        loop.close()
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    return Exam(result, out, events)


class Client:
    """A browser stand-in: exchanges the token, keeps the cookie and the CSRF token."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.origin = f"http://{parts.netloc}"
        self.cookie = ""
        self.csrf = ""
        status, headers, _ = self.get(f"/?{parts.query}")
        assert status == 303, status
        jar = SimpleCookie(headers["set-cookie"])
        self.set_cookie_header = headers["set-cookie"]
        self.cookie = f"fluoro_console={jar['fluoro_console'].value}"
        _, _, page = self.get("/")
        found = re.search(r'name="csrf-token" content="([^"]+)"', page.decode())
        assert found is not None
        self.csrf = found.group(1)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        sent = {"Cookie": self.cookie} if self.cookie else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.update({"Content-Type": "application/json", "X-CSRF-Token": self.csrf})
        sent.update(headers or {})
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", path, body, **kw)

    def state(self) -> dict[str, Any]:
        status, _, body = self.get("/state")
        assert status == 200
        result: dict[str, Any] = json.loads(body)
        return result


def in_thread(fn: Callable[[], None]) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # surfaced by the test through .errors
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t
