"""Operator prompts: answered at a terminal by a technologist, or by a script (simulator, CI)."""

from __future__ import annotations

import asyncio
import sys
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


class TerminalOperator:
    """Asks on a terminal; Enter or 'y' confirms, 'n' declines.

    Under a virtual clock the wait runs in real time, because a person is answering.
    """

    def __init__(
        self, clock: Clock, stream_in: TextIO | None = None, stream_out: TextIO | None = None
    ) -> None:
        self._clock = clock
        self._in = stream_in or sys.stdin
        self._out = stream_out or sys.stderr

    async def ask(self, prompt: Prompt) -> bool:
        loop = asyncio.get_running_loop()
        while True:
            self._out.write(f"\n>>> [{prompt.step}] {prompt.message}\n    confirm? [Y/n] ")
            self._out.flush()
            with self._clock.real_time_wait():
                line = await loop.run_in_executor(None, self._in.readline)
            if line == "":
                raise EOFError("operator input closed while a prompt was waiting")
            answer = line.strip().lower()
            if answer in ("", "y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
