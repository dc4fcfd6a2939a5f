"""Operator prompts: answered at a terminal by a technologist, or by a script (simulator, CI)."""

from __future__ import annotations

import asyncio
import collections
import getpass
import io
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TextIO, TypeVar

from drivers import Clock

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prompt:
    step: str
    #: confirm_injection, reposition, compression_on, compression_off, void or note
    action: str
    message: str
    position: str | None = None


#: where an answer or a request came from (journaled with it)
Source = Literal["terminal", "console", "script"]


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer with who gave it; an operator may return a plain bool instead (its
    ``source`` attribute, else ``script``, names where it came from)."""

    confirmed: bool
    source: Source
    #: who or where exactly (a console session and address); empty when nothing more is known
    who: str = ""


class Operator(Protocol):
    async def ask(self, prompt: Prompt) -> bool | Answer:
        """Return True when the operator confirms the action was done (or may be done)."""
        ...


def answer_of(operator: object, answer: bool | Answer) -> Answer:
    """``answer`` with its source: a bare bool is from the operator's ``source``."""
    if isinstance(answer, Answer):
        return answer
    source = getattr(operator, "source", "script")
    if source == "terminal":
        return Answer(bool(answer), "terminal")
    if source == "console":
        return Answer(bool(answer), "console")
    return Answer(bool(answer), "script")


class ScriptedOperator:
    """Confirms every prompt after a per-action delay on the shared clock.

    ``decline`` names actions the script refuses (to test refusal paths).
    """

    source: Source = "script"

    def __init__(
        self, clock: Clock, delays_s: Mapping[str, float], decline: frozenset[str] = frozenset()
    ) -> None:
        self._clock = clock
        self._delays = dict(delays_s)
        self._decline = decline

    async def ask(self, prompt: Prompt) -> bool:
        await asyncio.sleep(self._delays.get(prompt.action, 3.0))
        return prompt.action not in self._decline


#: answers a terminal accepts: (confirm, decline); nothing is taken by default
ANSWERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # starting an injection is the one irreversible prompt: the word itself is asked for
    "confirm_injection": (frozenset({"start"}), frozenset({"n", "no", "cancel"})),
    # after a declined step whose protocol says ``on_decline: ask``: go on without it, or end
    "on_decline": (frozenset({"skip"}), frozenset({"abort"})),
}
DEFAULT_ANSWERS = (frozenset({"y", "yes"}), frozenset({"n", "no"}))


def accepted_answers(action: str) -> tuple[frozenset[str], frozenset[str]]:
    """The words that confirm and that decline ``action`` at a terminal."""
    return ANSWERS.get(action, DEFAULT_ANSWERS)


def answer_hint(action: str) -> str:
    confirm, decline = accepted_answers(action)
    return (
        f"type {' or '.join(sorted(confirm))} to confirm, {' or '.join(sorted(decline))} to decline"
    )


class TerminalOperator:
    """Asks on a terminal. Every answer is deliberate: a blank line confirms nothing.

    The injection start is confirmed only by typing ``start``; other prompts by ``y``/``yes``;
    ``n``/``no`` declines. An unrecognised answer is refused with the accepted ones and the
    question is asked again. Under a virtual clock the wait runs in real time, because a
    person is answering.
    """

    source: Source = "terminal"

    def __init__(
        self, clock: Clock, stream_in: TextIO | None = None, stream_out: TextIO | None = None
    ) -> None:
        self._clock = clock
        self._in = stream_in or sys.stdin
        self._out = stream_out or sys.stderr
        #: journaled with every answer: the login and the terminal it was typed at
        self.who = terminal_identity(self._in)

    async def ask(self, prompt: Prompt) -> Answer:
        confirm, decline = accepted_answers(prompt.action)
        hint = answer_hint(prompt.action)
        self._out.write(f"\n>>> [{prompt.step}] {prompt.message}\n")
        while True:
            self._out.write(f"    {hint}: ")
            self._out.flush()
            with self._clock.real_time_wait():
                line = await self._readline()
            if line == "":
                raise EOFError("operator input closed while a prompt was waiting")
            answer = line.strip().lower()
            if answer in confirm or answer in decline:
                return Answer(answer in confirm, "terminal", self.who)
            shown = repr(line.strip()) if line.strip() else "an empty answer"
            self._out.write(f"    {shown} is not an answer here ({hint})\n")

    async def _readline(self) -> str:
        """Read a line in a daemon thread: an abandoned prompt (abort, Ctrl-C) must not keep
        the process alive the way a blocked executor thread would."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()

        def read() -> None:
            line = self._in.readline()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_set_if_pending, fut, line)

        threading.Thread(target=read, name="operator-input", daemon=True).start()
        return await fut


def terminal_identity(stream: TextIO) -> str:
    """``user@host on /dev/pts/N`` (the terminal when the input is one, else ``stdin``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = f"uid {os.getuid()}"
    try:
        where = os.ttyname(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
        where = "stdin"
    return f"{user}@{socket.gethostname()} on {where}"


def _set_if_pending(fut: asyncio.Future[str], value: str) -> None:
    if not fut.done():
        fut.set_result(value)


# -- operator actions beside the prompts: skip a step, repeat a film, an extra film -----------
RequestAction = Literal["skip", "repeat", "extra"]


@dataclass(frozen=True, slots=True)
class Request:
    """An operator action on a running exam. ``step``: the step to skip, or the step whose
    film is repeated; for an extra film, the step whose view the room is at."""

    action: RequestAction
    step: str | None
    reason: str
    source: Source
    who: str = ""


class SkipStep(Exception):
    """Ends the running step as skipped (nothing more of it is done)."""

    def __init__(self, request: Request, by: str = "skip") -> None:
        super().__init__(request.reason)
        self.request, self.by = request, by


class OperatorRequests:
    """The accepted operator actions not yet carried out, and a wake-up for whoever waits.

    Skips are kept per step until that step reaches a point where nothing fire-once is
    under way (its time point wait, a prompt, its start); films wait in order for a moment
    the room is free (see :mod:`scheduler.exam.handlers.operator_films`).
    """

    def __init__(self) -> None:
        self._skips: dict[str, Request] = {}
        self._films: collections.deque[Request] = collections.deque()
        self._changed = asyncio.Event()

    def add(self, request: Request) -> None:
        if request.action == "skip":
            assert request.step is not None
            self._skips.setdefault(request.step, request)
        else:
            self._films.append(request)
        self._changed.set()

    def skip_wanted(self, step: str | None) -> Request | None:
        return None if step is None else self._skips.get(step)

    def take_skip(self, step: str) -> Request | None:
        return self._skips.pop(step, None)

    @property
    def films(self) -> tuple[Request, ...]:
        return tuple(self._films)

    def take_film(self) -> Request:
        return self._films.popleft()

    async def wait(self, clock: Clock, until_s: float) -> bool:
        """Sleep until ``until_s`` (loop time); True as soon as a request arrives first."""
        if self._changed.is_set():
            self._changed.clear()
            return True
        sleeper = asyncio.ensure_future(clock.sleep_until(until_s))
        waker = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        if self._changed.is_set():
            self._changed.clear()
            return True
        return False

    async def unless_skipped(self, step: str, waiting: Awaitable[T]) -> T:
        """Await ``waiting`` (an operator's answer); a skip of ``step`` that arrives first
        abandons it and raises :class:`SkipStep`."""
        task = asyncio.ensure_future(waiting)
        try:
            while True:
                skip = self._skips.pop(step, None)
                if skip is not None:
                    raise SkipStep(skip)
                self._changed.clear()
                waker = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({task, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
                if task.done():
                    return task.result()
        finally:
            task.cancel()
