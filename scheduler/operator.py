"""Operator prompts: answered at a terminal by a technologist, or by a script (simulator, CI)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TextIO

from drivers import Clock


@dataclass(frozen=True, slots=True)
class Prompt:
    step: str
    #: confirm_injection, reposition, compression_on, compression_off, void or note
    action: str
    message: str
    position: str | None = None


class Operator(Protocol):
    async def ask(self, prompt: Prompt) -> bool:
        """Return True when the operator confirms the action was done (or may be done)."""
        ...


class ScriptedOperator:
    """Confirms every prompt after a per-action delay on the shared clock.

    ``decline`` names actions the script refuses (to test refusal paths).
    """

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

    def __init__(
        self, clock: Clock, stream_in: TextIO | None = None, stream_out: TextIO | None = None
    ) -> None:
        self._clock = clock
        self._in = stream_in or sys.stdin
        self._out = stream_out or sys.stderr

    async def ask(self, prompt: Prompt) -> bool:
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
            if answer in confirm:
                return True
            if answer in decline:
                return False
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


def _set_if_pending(fut: asyncio.Future[str], value: str) -> None:
    if not fut.done():
        fut.set_result(value)
