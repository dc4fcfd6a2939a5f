"""Whole exams on the in-process simulator, each run once per test session."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers import VirtualTimeEventLoop
from scheduler.compose import RunOutcome, run_exam

ROOT = Path(__file__).resolve().parents[2]
WALL_ANCHOR = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)


@dataclass
class Exam:
    outcome: RunOutcome
    out: Path
    events: list[dict[str, Any]]
    summary: dict[str, Any]

    def step(self, step_id: str) -> dict[str, Any]:
        return next(s for s in self.summary["steps"] if s["id"] == step_id)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def run(protocol: str, out: Path, patient: str | None = None) -> Exam:
    loop = VirtualTimeEventLoop()
    try:
        outcome = loop.run_until_complete(
            run_exam(
                ROOT / f"configs/protocols/{protocol}.yaml",
                ROOT / "configs/rooms/simulator.yaml",
                out,
                patient=patient,
                wall_anchor=WALL_ANCHOR,
            )
        )
    finally:
        loop.close()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return Exam(outcome, out, events, summary)


@pytest.fixture(scope="session")
def standard(tmp_path_factory) -> Exam:
    return run("ivu-standard", tmp_path_factory.mktemp("standard"))


@pytest.fixture(scope="session")
def accelerated(tmp_path_factory) -> Exam:
    return run("ivu-accelerated", tmp_path_factory.mktemp("accelerated"))


@pytest.fixture(scope="session")
def obstruction(tmp_path_factory) -> Exam:
    return run(
        "ivu-obstruction", tmp_path_factory.mktemp("obstruction"), patient="left-obstruction"
    )


@pytest.fixture(scope="session")
def nephrotomography(tmp_path_factory) -> Exam:
    return run("ivu-nephrotomography", tmp_path_factory.mktemp("nephrotomography"))
