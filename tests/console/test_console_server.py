"""The console server over HTTP: access rules, and a whole exam driven through its API.

The exam runs on virtual time on the test's thread; the server runs in its own thread, and
a client thread plays the browser (answering each prompt as it appears).
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import socket
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom

from drivers.backends import ContrastProbe
from scheduler.console import ConsoleHub, ConsoleOperator, ConsoleServer
from scheduler.console.curves import SAMPLE_S, SHOWN, CurveSampler
from scheduler.console.folder import FolderTail
from scheduler.console.hub import MAXSIZE
from scheduler.console.view import ExamView
from scheduler.exam import ExamRunner

from .harness import Client, in_thread, protocol, run_exam


def served(tmp_path: Path) -> ConsoleServer:
    hub = ConsoleHub()
    server = ConsoleServer(hub, tmp_path)
    server.start()
    return server


def raw(server: ConsoleServer, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> tuple[int, dict[str, str]]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


def test_without_the_token_nothing_is_served(tmp_path):
    server = served(tmp_path)
    try:
        for path in ("/", "/state", "/events", "/app.js", "/image/001-scout.png"):
            assert raw(server, "GET", path)[0] == 401, path
        assert raw(server, "GET", "/?token=wrong")[0] == 403
        assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")
    finally:
        server.stop()


def test_the_token_is_one_time_and_gives_an_httponly_strict_cookie(tmp_path):
    server = served(tmp_path)
    try:
        client = Client(server.url)
        cookie = client.set_cookie_header.lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/state")[0] == 200
        query = server.url.split("?", 1)[1]
        assert raw(server, "GET", f"/?{query}")[0] == 403  # used once already
    finally:
        server.stop()


def test_posts_need_the_csrf_token_same_origin_and_json(tmp_path):
    hub = ConsoleHub()
    server = ConsoleServer(hub, tmp_path, ConsoleOperator.__new__(ConsoleOperator))
    server.start()
    try:
        client = Client(server.url)
        body = {"action": "pause"}
        assert client.post("/api/control", body, headers={"X-CSRF-Token": ""})[0] == 403
        assert client.post("/api/control", body, headers={"X-CSRF-Token": "forged"})[0] == 403
        evil = {"Origin": "http://evil.example"}
        assert client.post("/api/control", body, headers=evil)[0] == 403
        assert client.post("/api/control", body, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert client.post("/api/control", body, headers=form)[0] == 415
        # no CORS: a preflight is not answered with an allowance, no response carries one
        status, headers = raw(server, "OPTIONS", "/api/control",
                              {"Origin": "http://evil.example", "Cookie": client.cookie})  # fmt: skip
        assert status >= 400 and "access-control-allow-origin" not in headers
        assert "access-control-allow-origin" not in client.get("/state")[1]
        # a page on another name for this address (DNS rebinding) is refused
        status, _ = raw(server, "GET", "/state", {"Host": "evil.example", "Cookie": client.cookie})
        assert status == 421
    finally:
        server.stop()


def test_a_read_only_console_refuses_controls_and_shows_the_folder(tmp_path):
    done = run_exam(tmp_path / "exam", protocol("ivu-accelerated"))
    hub = ConsoleHub()
    assert FolderTail(done.out, hub).poll() == len(done.events)
    server = ConsoleServer(hub, done.out)
    server.start()
    try:
        client = Client(server.url)
        state = client.state()
        assert state["exam"]["state"] == "completed" and state["controls"] is False
        assert [s["status"] for s in state["steps"]] == ["done"] * 6
        assert state["last_image"] == done.kinds("capture")[-1]["data"]["file"]
        assert client.post("/api/control", {"action": "abort"})[0] == 409
        status, headers, png = client.get(
            f"/image/{state['last_image'][:-4]}.png?center=500&width=800"
        )
        assert status == 200 and headers["content-type"] == "image/png"
        assert png.startswith(b"\x89PNG")
    finally:
        server.stop()


def test_a_whole_exam_answered_and_driven_through_the_console_api(tmp_path):
    """Every prompt answered over HTTP; a pause and resume and a skip and a repeat asked for
    while a prompt waits (the exam is held in real time then, so it is deterministic)."""
    console = ConsoleOperator.__new__(ConsoleOperator)
    ConsoleOperator.__init__(console, clock=None, announce=lambda _: None)  # type: ignore[arg-type]
    answered: list[str] = []
    replies: list[tuple[str, int]] = []

    def browser() -> None:
        while console.server is None or not console.server.url:
            time.sleep(0.01)
        client = Client(console.server.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = client.state()
            if state["exam"]["state"] in ("completed", "aborted", "faulted"):
                return
            prompt = state["prompt"]
            if prompt is None:
                time.sleep(0.01)
                continue
            if prompt["step"] == "compression-on":
                for body in ({"action": "pause"}, {"action": "resume"}):
                    replies.append((body["action"], client.post("/api/control", body)[0]))
                skip = {"action": "skip", "step": "prone", "reason": "cannot lie prone"}
                replies.append(("skip", client.post("/api/request", skip)[0]))
                repeat = {"action": "repeat", "step": "film-5min", "reason": "blurred"}
                replies.append(("repeat", client.post("/api/request", repeat)[0]))
            status, _, _ = client.post("/api/answer", {"prompt": prompt["id"], "confirmed": True})
            assert status == 200
            answered.append(f"{prompt['step']}:{prompt['action']}")
            while client.state()["prompt"] == prompt:
                time.sleep(0.01)

    thread = in_thread(browser)
    exam = run_exam(tmp_path / "exam", protocol("ivu-standard"), console=console)
    thread.join(timeout=60)
    console.close()
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]
    assert exam.result.state == "completed"
    assert answered == [
        "inject:confirm_injection",
        "compression-on:compression_on",
        "compression-off:compression_off",
        "void:void",
    ]  # fmt: skip  (prone skipped: the patient stays supine, post-void asks no turn)
    assert replies == [("pause", 200), ("resume", 200), ("skip", 200), ("repeat", 200)]
    assert {e["data"]["source"] for e in exam.kinds("confirmed")} == {"console"}
    assert all("session" in e["data"]["who"] for e in exam.kinds("confirmed"))
    moves = [(e["data"]["from_state"], e["data"]["to_state"]) for e in exam.kinds("state")]
    assert ("running", "paused") in moves and ("paused", "running") in moves
    (skipped,) = exam.kinds("step_skipped")
    assert skipped["step"] == "prone" and skipped["data"]["source"] == "console"
    (film,) = exam.kinds("operator_film")
    assert film["step"] == "film-5min" and film["data"]["status"] == "done"
    assert len(exam.result.records) == 7 - 1 + 1  # prone skipped, one repeat


def aborted_from_the_console(out: Path) -> Any:
    """The standard exam, aborted from a browser at its first prompt; its console closed."""
    console = ConsoleOperator.__new__(ConsoleOperator)
    ConsoleOperator.__init__(console, clock=None, announce=lambda _: None)  # type: ignore[arg-type]

    def browser() -> None:
        while console.server is None or not console.server.url:
            time.sleep(0.01)
        client = Client(console.server.url)
        while client.state()["prompt"] is None:
            time.sleep(0.01)
        assert client.post("/api/control", {"action": "abort"})[0] == 200

    thread = in_thread(browser)
    exam = run_exam(out, protocol("ivu-standard"), console=console)
    thread.join(timeout=60)
    console.close()
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]
    return exam


def test_abort_from_the_console_ends_the_exam_safely(tmp_path):
    exam = aborted_from_the_console(tmp_path / "exam")
    assert exam.result.state == "aborted"
    assert "aborted by the operator (console" in exam.result.reason
    assert not [e for e in exam.kinds("command") if e["data"].get("command") == "start_injection"]
    assert exam.kinds("abort")


def test_a_closed_console_keeps_nothing_of_its_exam_alive(tmp_path):
    # A long-lived process (an integrator's service, a test session) runs exam after exam;
    # once one and its console are closed, its devices and their image caches must be freed.
    # (aiohttp keeps every handler that ran its middlewares in a process-wide cache.)
    from hardware_sim.room import SimRoom

    def rooms_alive() -> int:
        gc.collect()
        return sum(isinstance(o, SimRoom) for o in gc.get_objects())

    before = rooms_alive()
    assert aborted_from_the_console(tmp_path / "exam").result.state == "aborted"
    assert rooms_alive() == before


def watched_waits(hub: ConsoleHub) -> list[object]:
    """The display-only lines (time-point waits) the hub was handed besides the journal."""
    return hub.view.waits


def test_stalled_consoles_neither_delay_films_nor_grow_memory(tmp_path):
    """Five consoles attached, four of which never read their event stream: every film is
    commanded at exactly the same loop time as without consoles, and each stalled queue
    stays within its bound."""
    alone = run_exam(tmp_path / "alone", protocol("ivu-accelerated"))
    hub = ConsoleHub()
    server = ConsoleServer(hub, tmp_path)
    server.start()
    stalled: list[socket.socket] = []
    try:
        readers = []
        for n in range(5):
            client = Client(server.url) if n == 0 else Client.__new__(Client)
            if n:
                # each a session of its own (a fresh one-time token per console)
                server.gate._token_used = False
                client = Client(server.url)
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                         f"Cookie: {client.cookie}\r\n\r\n".encode())  # fmt: skip
            if n == 0:
                readers.append(sock)
            else:
                stalled.append(sock)  # never read
        while len(hub.clients) < 5:
            time.sleep(0.01)
        # and four consoles that have stopped reading altogether (their server never takes
        # from their queues): the bound is exact there
        idle_loop = asyncio.new_event_loop()
        silent = [hub.connect(idle_loop) for _ in range(4)]
        watched = run_exam(tmp_path / "watched", protocol("ivu-accelerated"), hub=hub)
        late_alone = {s.id: s.lateness_s for s in alone.result.steps}
        late_watched = {s.id: s.lateness_s for s in watched.result.steps}
        assert late_watched == late_alone
        assert [e["t_s"] for e in watched.kinds("capture")] == [
            e["t_s"] for e in alone.kinds("capture")
        ]
        assert len(watched.events) > MAXSIZE  # more lines than a queue may hold
        published = len(watched.events) + len(watched_waits(hub))
        for client in silent:
            assert len(client) == MAXSIZE
            assert client.dropped == published - MAXSIZE
        assert max(len(c) for c in hub.clients) <= MAXSIZE
        idle_loop.close()
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def test_contrast_curves_are_read_from_the_simulated_patient_without_changing_it(tmp_path):
    """The console samples the simulated patient's iodine every 10 s of exam time; the films
    of an exam watched that way are the same, pixel for pixel, as of one that is not."""
    hub = ConsoleHub()

    def sample(runner: ExamRunner) -> None:
        assert isinstance(runner.devices.effects, ContrastProbe)
        CurveSampler(runner.devices.effects, runner.clock, hub).start(runner.bus)

    plain = run_exam(tmp_path / "plain", protocol("ivu-accelerated"))
    watched = run_exam(tmp_path / "watched", protocol("ivu-accelerated"), on_runner=sample)
    for a, b in zip(sorted(plain.out.glob("0*.dcm")), sorted(watched.out.glob("0*.dcm")),
                    strict=True):  # fmt: skip
        assert np.array_equal(pydicom.dcmread(a).pixel_array, pydicom.dcmread(b).pixel_array)
    curves = hub.snapshot()["curves"]
    t = np.asarray(curves["t_s"])
    anchor = watched.kinds("injection_confirmed")[0]["data"]["started_at_s"]
    end = watched.kinds("exam_finished")[0]["t_s"]
    assert np.allclose(np.diff(t), SAMPLE_S)  # one point every 10 s of exam time ...
    assert t[-1] <= end < t[-1] + SAMPLE_S + 1e-6  # ... until the exam ended
    after = t - anchor
    plasma, pelvis = np.asarray(curves["plasma"]), np.asarray(curves["pelvis_left"])
    assert plasma[after < 0].max() == 0.0 and pelvis[after < 0].max() == 0.0
    assert 0 < after[plasma.argmax()] <= 60  # the bolus peaks in the blood within a minute
    assert pelvis[(after > 180) & (after < 300)].min() > 10.0  # the pyelogram at 3–5 min
    assert set(curves) == {"t_s", *SHOWN}


def test_thumbnails_fit_the_asked_size(tmp_path):
    done = run_exam(tmp_path / "exam", protocol("ivu-accelerated"))
    server = ConsoleServer(ConsoleHub(), done.out)
    server.start()
    try:
        client = Client(server.url)
        name = done.kinds("capture")[0]["data"]["file"][:-4]
        status, _, png = client.get(f"/image/{name}.png?size=160")
        assert status == 200
        thumb = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert max(thumb.shape) == 160
        full = cv2.imdecode(np.frombuffer(client.get(f"/image/{name}.png")[2], np.uint8), 0)
        assert max(full.shape) > 160
        assert client.get(f"/image/{name}.png?size=3")[0] == 400
    finally:
        server.stop()


def test_the_devices_panel_shows_each_link_lost_restored_and_attacked():
    view = ExamView()

    def line(source: str, kind: str, **data: object) -> None:
        view.apply({"t_s": 1.0, "source": source, "kind": kind, "step": None, "data": data})

    line("carm", "link_lost", link="serial:///dev/ttyUSB0", detail="pty closed")
    assert view.devices["carm"].startswith("LINK LOST (pty closed)")
    assert view.devices["table"] == "ok"
    line("carm", "link_up", link="serial:///dev/ttyUSB0", detail="")
    assert view.devices["carm"] == "ok (link up again)"
    line("injector", "security", what="forged", count=3, detail="bad MAC")
    assert view.devices["injector"] == "SECURITY: 3 frame(s) dropped (forged)"
    line("scheduler", "link_lost", detail="not a device")
    assert "scheduler" not in view.devices
