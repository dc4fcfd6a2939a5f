"""Hazard: a blank Enter at the terminal prompt started the contrast injection.

Every terminal answer is deliberate: the injection start needs the word ``start``; a blank
line or an unrecognised answer confirms nothing and is told which answers are accepted.
"""

from __future__ import annotations

import asyncio
import io
import json

from drivers import Clock, VirtualTimeEventLoop
from scheduler.operator import Prompt, TerminalOperator

from ..exam.test_cli_run import run_with_terminal_operator

INJECT = Prompt("inject", "confirm_injection", "Start injection: 50 mL at 2 mL/s?")


def ask(prompt: Prompt, typed: str) -> tuple[bool | None, str]:
    """The operator's answer to ``prompt`` given ``typed``, and what the terminal showed."""
    out = io.StringIO()

    async def go() -> bool | None:
        operator = TerminalOperator(Clock.for_running_loop(), io.StringIO(typed), out)
        try:
            answer = await operator.ask(prompt)
            assert answer.source == "terminal"
            return answer.confirmed
        except EOFError:
            return None  # input ran out: nothing was confirmed

    loop = VirtualTimeEventLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(go(), 30)), out.getvalue()
    finally:
        loop.close()


def test_blank_lines_and_yes_do_not_start_an_injection():
    answer, shown = ask(INJECT, "\n\ny\nyes\n")
    assert answer is None
    assert shown.count("is not an answer here (type start to confirm") == 4
    assert "an empty answer is not an answer here" in shown


def test_the_word_start_confirms_and_no_declines():
    assert ask(INJECT, "\nstart\n")[0] is True
    assert ask(INJECT, "no\n")[0] is False
    assert ask(INJECT, "cancel\n")[0] is False


def test_other_prompts_need_an_explicit_yes():
    turn = Prompt("prone", "reposition", "Turn the patient prone", "prone")
    answer, shown = ask(turn, "\nok\ny\n")
    assert answer is True
    assert shown.count("type y or yes to confirm, n or no to decline") >= 3
    assert "'ok' is not an answer here" in shown


def test_enter_alone_at_the_terminal_never_starts_the_injection(tmp_path):
    out = tmp_path / "blank"
    proc = run_with_terminal_operator(out, stdin="\n\n\n\n")
    assert proc.returncode == 1, proc.stderr[-2000:]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert "injection_started" not in kinds
    assert not any(
        e["kind"] == "command" and e["data"]["command"] == "start_injection" for e in events
    )
    assert (out / "001-scout.dcm").exists()
