"""The console as the exam's operator: prompts wait for a button, controls reach the runner.

Everything the server thread asks is handed to the exam's loop with
``call_soon_threadsafe``/``run_coroutine_threadsafe``; the exam never waits for the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivers import Clock
from drivers.backends import ContrastProbe

from ..operator import Answer, Prompt, Request, Source
from ..protocol import Protocol
from .curves import CurveSampler
from .hub import ConsoleHub
from .settings import ConsoleSettings

if TYPE_CHECKING:
    from ..exam import ExamRunner
    from ..exam.bus import EventBus, Recorded
    from .server import ConsoleServer


def labels(prompt: Prompt, on_decline: str) -> tuple[str, str]:
    """The two buttons' labels: each says what happens."""
    declined = {
        "skip": "skip this step, go on",
        "abort": "abort the exam",
        "ask": "then choose: skip or abort",
    }[on_decline]
    if prompt.action == "confirm_injection":
        return "Start the injection now", "Do not inject — abort the exam"
    if prompt.action == "on_decline":
        return "Skip this step and go on", "Abort the exam"
    if prompt.action == "reposition":
        return f"Patient is {prompt.position}: go on", f"Cannot turn the patient — {declined}"
    done = prompt.action.replace("_", " ")
    return f"Done ({done}): go on", f"Not done — {declined}"


class ConsoleOperator:
    """Answers prompts from the console page. ``attach`` it to the runner it serves."""

    source: Source = "console"

    def __init__(
        self,
        clock: Clock,
        hub: ConsoleHub | None = None,
        settings: ConsoleSettings | None = None,
        *,
        announce: Callable[[str], None] | None = None,
        password: str | None = None,
    ) -> None:
        self._clock, self.hub = clock, hub or ConsoleHub()
        self.settings = settings or ConsoleSettings()
        #: the room's console password (HTTPS consoles; docs/console.md), None: URL only
        self.password = password
        self._announce = announce or _to_stderr
        self._protocol: Protocol | None = None
        self.server: ConsoleServer | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: tuple[int, asyncio.Future[Answer], asyncio.AbstractEventLoop] | None = None
        self.runner: ExamRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _rule(self, prompt: Prompt) -> str:
        if self._protocol is None:
            return "abort" if prompt.action == "reposition" else "skip"
        step = next((s for s in self._protocol.steps if s.id == prompt.step), None)
        rule = getattr(step, "on_decline", None)
        if rule is None:
            rule = "abort" if prompt.action in ("reposition", "confirm_injection") else "skip"
        return str(rule)

    async def ask(self, prompt: Prompt) -> Answer:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Answer] = loop.create_future()
        pid = next(self._ids)
        confirm, decline = labels(prompt, self._rule(prompt))
        with self._lock:
            self._pending = (pid, fut, loop)
        self.hub.set_live(
            prompt={
                "id": pid,
                "step": prompt.step,
                "action": prompt.action,
                "message": prompt.message,
                "confirm": confirm,
                "decline": decline,
                "deliberate": prompt.action == "confirm_injection",
            }
        )
        try:
            with self._clock.real_time_wait():  # a person is answering
                return await fut
        finally:
            with self._lock:
                self._pending = None
            self.hub.set_live(prompt=None)

    def answer(self, prompt_id: int, confirmed: bool, who: str) -> str | None:
        """From the server: answer prompt ``prompt_id``; None when taken, else why not."""
        with self._lock:
            pending = self._pending
        if pending is None or pending[0] != prompt_id:
            return "that prompt is no longer waiting"
        _, fut, loop = pending
        loop.call_soon_threadsafe(_settle, fut, Answer(confirmed, "console", who))
        return None

    # -- the controls --------------------------------------------------------------------------
    def attach(self, runner: ExamRunner, *, serve: bool = True) -> None:
        """Feed the hub from ``runner``'s events, take the controls of it and (``serve``)
        start the server, announcing its one-time URL."""
        from .server import ConsoleServer

        self.runner, self._loop = runner, asyncio.get_running_loop()
        self._protocol = runner.protocol
        for step in runner.protocol.steps:
            self.hub.view.steps.setdefault(
                step.id, {"id": step.id, "status": "pending", "files": []}
            ).update(title=step.title, type=step.type)
        self.hub.set_live(controls=True)
        probe = runner.devices.effects
        if isinstance(probe, ContrastProbe):  # a simulated patient: show its curves
            CurveSampler(probe, runner.clock, self.hub).start(runner.bus)
        if serve:
            self.server = ConsoleServer(
                self.hub, runner.out_dir, self, self.settings, password=self.password
            )
            self._announce(f"operator console: {self.server.start()}")
            if self.password is not None:
                self._announce(
                    f"  or log in at {self.server.base_url}/login with the room's console "
                    "password (fluoroctl keys console ROOM)"
                )

        feed(runner.bus, self.hub)

    def control(self, action: str, who: str) -> concurrent.futures.Future[str | None]:
        """pause | resume | abort, run on the exam's loop; the future gives why not, or None."""
        return self._on_exam(lambda: self._control(action, who))

    def request(
        self, action: str, step: str | None, reason: str, who: str
    ) -> concurrent.futures.Future[str | None]:
        if action not in ("skip", "repeat", "extra"):
            return _done(f"unknown action {action!r}")
        request = Request(action, step, reason or "operator", "console", who)  # type: ignore[arg-type]
        return self._on_exam(lambda: self._runner().request(request))

    def _control(self, action: str, who: str) -> str | None:
        runner = self._runner()
        if runner.state.terminal:
            return "the exam is over"
        if action == "abort":
            from ..exam.faults import end_exam
            from ..state import RunState

            end_exam(runner.ctx, RunState.ABORTED, f"aborted by the operator (console, {who})")
            return None
        return runner.control(action, f"operator (console, {who})")

    def _runner(self) -> ExamRunner:
        assert self.runner is not None, "the console is not attached to an exam"
        return self.runner

    def _on_exam(self, fn: Callable[[], str | None]) -> concurrent.futures.Future[str | None]:
        if self._loop is None or self._loop.is_closed():
            return _done("no exam is running")

        async def call() -> str | None:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop)

    def close(self) -> None:
        """Stop the server (the exam's record is already closed or never was)."""
        if self.server is not None:
            self.server.stop()


def feed(bus: EventBus, hub: ConsoleHub) -> None:
    """Hand ``hub`` every journal line of ``bus`` and the display's time-point waits (a
    deferred subscriber: the exam never waits for it)."""

    def deliver(recorded: Recorded) -> None:
        if recorded.seq is not None:
            hub.publish(recorded.line.model_dump(mode="json"))
        elif recorded.kind in ("waiting", "wait_over"):
            data = recorded.event.data()
            hub.publish({"kind": recorded.kind, "step": recorded.step, "t_s": recorded.t_s,
                         "data": data})  # fmt: skip

    bus.subscribe(deliver)


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _settle(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _done(value: str | None) -> concurrent.futures.Future[str | None]:
    fut: concurrent.futures.Future[str | None] = concurrent.futures.Future()
    fut.set_result(value)
    return fut
