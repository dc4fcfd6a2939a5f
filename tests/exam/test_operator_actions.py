"""Operator actions on virtual time: on_decline per step, skip a step, repeat a film, an extra
film, and where each answer came from — checked in the journal and the result.

The accelerated IVU (films at 1, 4 and 7 min after the injector-reported start, then a prone
film that turns the patient) on the in-process simulator. Requests are made at loop times
relative to the injection start, so every check is exact.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers import Clock, VirtualTimeEventLoop
from scheduler.compose import open_devices
from scheduler.exam import ANONYMOUS, ExamResult, ExamRunner, RoomInfo, make_exam_info
from scheduler.journal import ExamEvent
from scheduler.operator import Answer, Prompt, Request, TerminalOperator, terminal_identity
from scheduler.protocol import Protocol, load_protocol
from scheduler.room import load_room

from .conftest import ROOT, WALL_ANCHOR

PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"
ROOM = ROOT / "configs/rooms/simulator.yaml"
TIMED = {"film-1min": 60.0, "film-4min": 240.0, "film-7min": 420.0}


class PlannedOperator:
    """Answers after 3 s: ``answers[(step, action)]`` (default: confirm), from ``source``."""

    def __init__(self, answers: dict[tuple[str, str], bool], source: str = "console") -> None:
        self.answers, self.source = answers, source
        self.asked: list[Prompt] = []

    async def ask(self, prompt: Prompt) -> Answer:
        self.asked.append(prompt)
        await asyncio.sleep(3.0)
        confirmed = self.answers.get((prompt.step, prompt.action), True)
        return Answer(confirmed, "console", who="test session")


@dataclass
class Run:
    result: ExamResult
    events: list[dict[str, Any]]
    anchor: float | None
    refusals: list[str | None]
    out: Path

    def step(self, step_id: str) -> Any:
        return next(s for s in self.result.steps if s.id == step_id)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def exposures(self, step: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kinds("command")
            if e["data"].get("command") == "expose" and e["step"] == step
        ]


Plan = list[tuple[float, Request]]


def protocol_with(**step_fields: dict[str, Any]) -> Protocol:
    data = load_protocol(PROTOCOL).model_dump(mode="json", exclude_unset=True)
    for step in data["steps"]:
        step.update(step_fields.get(step["id"], {}))
    return Protocol.model_validate(data)


def run(
    tmp_path: Path,
    plan: Plan = (),  # type: ignore[assignment]
    protocol: Protocol | None = None,
    answers: dict[tuple[str, str], bool] | None = None,
    on_line: Callable[[ExamRunner, ExamEvent, list[str | None]], None] | None = None,
    operator: Callable[[Clock], Any] | None = None,
) -> Run:
    protocol = protocol or load_protocol(PROTOCOL)
    room = load_room(ROOM)
    out = tmp_path / "exam"
    out.mkdir()
    loop = VirtualTimeEventLoop()
    holder: dict[str, Any] = {"anchor": None}
    refusals: list[str | None] = []

    def on_event(event: ExamEvent) -> None:
        runner = holder["runner"]
        if on_line is not None:
            on_line(runner, event, refusals)
        if event.kind == "injection_confirmed":
            anchor = float(event.data["started_at_s"])
            holder["anchor"] = anchor
            for offset, request in plan:
                loop.call_at(anchor + offset, lambda r=request: refusals.append(runner.request(r)))

    async def go() -> ExamResult:
        clock = Clock.for_running_loop(WALL_ANCHOR)
        devices = await open_devices(room, clock, ROOT, {})
        try:
            patient = RoomInfo.of(devices).patient or ANONYMOUS
            exam = make_exam_info(protocol, room, patient, clock.wall_now())
            runner = ExamRunner(
                protocol, room, devices, clock,
                operator(clock) if operator else PlannedOperator(answers or {}), out, exam,
                on_event=on_event,
            )  # fmt: skip
            holder["runner"] = runner
            return await runner.run()
        finally:
            await devices.aclose()

    try:
        result = loop.run_until_complete(go())
    finally:
        loop.close()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return Run(result, events, holder["anchor"], refusals, out)


def check_on_time(r: Run, steps: list[str]) -> None:
    assert r.anchor is not None
    for sid in steps:
        s = r.step(sid)
        assert s.status == "done", (sid, s.status, s.detail)
        assert s.planned_s == pytest.approx(r.anchor + TIMED[sid], abs=1e-9), sid
        assert 0 <= s.commanded_s - s.planned_s <= 1e-6, (sid, s.commanded_s - s.planned_s)


# -- on_decline --------------------------------------------------------------------------------
def test_a_declined_reposition_aborts_by_default(tmp_path):
    r = run(tmp_path, answers={("prone", "reposition"): False})
    assert r.result.state == "aborted"
    assert "declined to reposition" in r.result.reason
    (declined,) = r.kinds("declined")
    assert declined["data"]["source"] == "console" and declined["data"]["who"] == "test session"


def test_on_decline_skip_skips_the_repositioning_film_and_the_exam_completes(tmp_path):
    r = run(
        tmp_path,
        protocol=protocol_with(prone={"on_decline": "skip"}),
        answers={("prone", "reposition"): False},
    )
    assert r.result.state == "completed"
    prone = r.step("prone")
    assert prone.status == "skipped" and not prone.files
    assert not r.exposures("prone")
    (skip,) = r.kinds("step_skipped")
    assert skip["step"] == "prone" and skip["data"]["by"] == "decline"
    assert skip["data"]["source"] == "console"
    assert [e["data"]["status"] for e in r.kinds("step_done") if e["step"] == "prone"] == [
        "skipped"
    ]


@pytest.mark.parametrize(
    ("follow_up", "state", "prone_status"),
    [(True, "completed", "skipped"), (False, "aborted", "pending")],
)
def test_on_decline_ask_asks_whether_to_skip_or_abort(tmp_path, follow_up, state, prone_status):
    r = run(
        tmp_path,
        protocol=protocol_with(prone={"on_decline": "ask"}),
        answers={("prone", "reposition"): False, ("prone", "on_decline"): follow_up},
    )
    assert r.result.state == state
    asked = [(e["step"], e["data"]["action"]) for e in r.kinds("prompt")]
    assert asked[-2:] == [("prone", "reposition"), ("prone", "on_decline")]
    assert r.step("prone").status == prone_status or (
        state == "aborted" and r.step("prone").status != "done"
    )
    assert not r.exposures("prone")


@pytest.mark.parametrize(
    ("typed", "state", "prone_status"),
    [("skip", "completed", "skipped"), ("abort", "aborted", "pending")],
)
def test_a_terminal_operator_answers_ask_with_the_words_it_is_shown(
    tmp_path, typed, state, prone_status
):
    # Typed in order: the injection start, "no" to turning the patient, then a blank line and
    # a "yes" that are no answer to "skip or abort", then the word itself.
    shown = io.StringIO()
    typed_in = io.StringIO(f"start\nno\n\nyes\n{typed}\n")
    r = run(
        tmp_path,
        protocol=protocol_with(prone={"on_decline": "ask"}),
        operator=lambda clock: TerminalOperator(clock, typed_in, shown),
    )
    assert r.result.state == state
    assert r.step("prone").status == prone_status or (
        state == "aborted" and r.step("prone").status != "done"
    )
    assert not r.exposures("prone")
    answers = r.kinds("confirmed") + r.kinds("declined")
    assert sorted((e["step"], e["data"]["action"], e["kind"]) for e in answers) == [
        ("inject", "confirm_injection", "confirmed"),
        ("prone", "on_decline", "confirmed" if typed == "skip" else "declined"),
        ("prone", "reposition", "declined"),
    ]
    assert {e["data"]["source"] for e in answers} == {"terminal"}
    assert {e["data"]["who"] for e in answers} == {terminal_identity(typed_in)}
    assert " on stdin" in terminal_identity(typed_in)  # a StringIO is no terminal
    text = shown.getvalue()
    assert "type skip to confirm, abort to decline" in text
    assert "an empty answer is not an answer here" in text
    assert "'yes' is not an answer here" in text


def test_an_injection_step_admits_only_on_decline_abort():
    with pytest.raises(ValueError, match="on_decline"):
        protocol_with(inject={"on_decline": "skip"})


# -- skip ----------------------------------------------------------------------------------------
def test_skipping_a_future_film_takes_nothing_of_it_and_keeps_the_others_on_time(tmp_path):
    r = run(tmp_path, [(30.0, Request("skip", "film-4min", "patient unwell", "console", "s1"))])
    assert r.refusals == [None]
    assert r.result.state == "completed"
    film = r.step("film-4min")
    assert film.status == "skipped" and not film.files
    assert "patient unwell" in film.detail and "console" in film.detail
    assert not r.exposures("film-4min")
    (req,) = r.kinds("operator_request")
    assert req["step"] == "film-4min" and req["data"]["action"] == "skip"
    assert req["data"]["source"] == "console" and req["data"]["who"] == "s1"
    (skip,) = r.kinds("step_skipped")
    assert skip["step"] == "film-4min" and skip["data"]["by"] == "skip"
    check_on_time(r, ["film-1min", "film-7min"])


def test_skipping_the_film_that_waits_for_its_time_point_ends_its_wait(tmp_path):
    r = run(tmp_path, [(100.0, Request("skip", "film-4min", "not needed", "console"))])
    film = r.step("film-4min")
    assert film.status == "skipped" and not r.exposures("film-4min")
    (skip,) = r.kinds("step_skipped")
    # the skip took effect when it was asked for, not at the time point
    assert skip["t_s"] == pytest.approx(r.anchor + 100.0, abs=1e-6)
    check_on_time(r, ["film-1min", "film-7min"])


def test_a_skip_of_the_injection_or_of_a_finished_step_is_refused_and_journaled(tmp_path):
    r = run(
        tmp_path,
        [
            (20.0, Request("skip", "inject", "x", "console")),
            (20.0, Request("skip", "scout", "x", "console")),
            (20.0, Request("skip", "nope", "x", "console")),
        ],
    )
    assert all(r.refusals) and len(r.refusals) == 3
    why = " | ".join(str(x) for x in r.refusals)
    assert "injection cannot be skipped" in why
    assert "step scout is already done" in why and "no step 'nope'" in why
    assert len(r.kinds("operator_request_refused")) == 3
    assert not r.kinds("step_skipped")
    check_on_time(r, list(TIMED))


# -- repeat and extra films ----------------------------------------------------------------------
def test_a_repeated_film_is_a_new_exposure_beside_the_first_and_moves_no_time_point(tmp_path):
    r = run(tmp_path, [(90.0, Request("repeat", "film-1min", "motion blur", "console", "s1"))])
    assert r.refusals == [None]
    assert r.result.state == "completed"
    captures = [e for e in r.kinds("capture") if e["step"] == "film-1min"]
    assert len(captures) == 2 and captures[0]["data"]["file"] != captures[1]["data"]["file"]
    for c in captures:
        assert (r.out / c["data"]["file"]).exists()
        assert c["data"]["reference_air_kerma_mgy"] > 0
    assert len(r.exposures("film-1min")) == 2
    (film,) = r.kinds("operator_film")
    assert film["step"] == "film-1min" and film["data"]["action"] == "repeat"
    assert film["data"]["status"] == "done"
    assert film["data"]["files"] == [captures[1]["data"]["file"]]
    assert film["data"]["source"] == "console" and film["data"]["reason"] == "motion blur"
    # the first film is kept: the step still lists it, and the result holds both images
    assert r.step("film-1min").files == [captures[0]["data"]["file"]]
    assert sum(1 for rec in r.result.records if rec.step_id == "film-1min") == 2
    labels = [rec.label for rec in r.result.records if rec.step_id == "film-1min"]
    assert labels[1].endswith("(repeat 1)")
    # counted in the dose like any exposure: the exam's kerma is the sum of every capture
    total = sum(e["data"]["reference_air_kerma_mgy"] for e in r.kinds("capture"))
    assert total == pytest.approx(
        sum(f.dose.reference_air_kerma_mgy for rec in r.result.records for f in rec.frames)
    )
    check_on_time(r, list(TIMED))


def test_an_extra_film_is_taken_at_the_view_the_room_is_at(tmp_path):
    r = run(tmp_path, [(90.0, Request("extra", None, "check the ureters", "console"))])
    assert r.refusals == [None]
    (film,) = r.kinds("operator_film")
    # after the 1-min film the room waits at the 4-min film's kidneys view
    assert film["step"] == "film-4min" and film["data"]["action"] == "extra"
    assert film["data"]["status"] == "done" and len(film["data"]["files"]) == 1
    check_on_time(r, list(TIMED))
    # scout, three timed films, prone: and the extra one
    assert len(r.result.records) == 5 + 1


def test_a_film_asked_for_just_before_a_time_point_waits_until_after_it(tmp_path):
    r = run(tmp_path, [(230.0, Request("repeat", "film-1min", "late ask", "console"))])
    (film,) = r.kinds("operator_film")
    check_on_time(r, list(TIMED))
    assert film["t_s"] > r.step("film-4min").device_s


def test_no_film_while_the_injection_start_is_unconfirmed(tmp_path):
    def at_start_command(runner: ExamRunner, event: ExamEvent, refusals: list[str | None]) -> None:
        if event.kind == "command" and event.data.get("command") == "start_injection":
            refusals.append(runner.request(Request("repeat", "scout", "now", "console")))

    r = run(tmp_path, on_line=at_start_command)
    assert len(r.refusals) == 1 and "not confirmed" in str(r.refusals[0])
    (refused,) = r.kinds("operator_request_refused")
    assert refused["data"]["action"] == "repeat"
    assert not r.kinds("operator_film")


def test_a_repeat_of_a_film_taken_in_another_position_is_refused(tmp_path):
    plan = [(430.0 + 40.0, Request("repeat", "film-1min", "x", "console"))]
    r = run(tmp_path, plan, protocol=protocol_with(prone={"at": "9min"}))
    # at +7:50 the patient is being turned prone for the 9-min film, or is prone
    assert r.refusals and ("prone" in str(r.refusals[0]) or r.refusals[0] is None)


def test_answers_are_journaled_with_their_source(tmp_path):
    r = run(tmp_path)
    answered = r.kinds("confirmed")
    assert answered and {e["data"]["source"] for e in answered} == {"console"}
    assert {e["data"]["who"] for e in answered} == {"test session"}
    assert {e["source"] for e in answered} == {"operator"}  # the line is the operator's
