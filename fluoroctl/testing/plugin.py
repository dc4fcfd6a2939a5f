"""fluoroctl's pytest plugin: whole exams on the simulator as fixtures.

Loaded by the ``pytest11`` entry point ``fluoroctl`` once fluoroctl is installed (or with
``-p fluoroctl.testing.plugin``). Fixtures:

``sim_room``
    the built-in simulator room (:class:`~scheduler.room.Room`, virtual time): every device
    in-process, an hour-long exam in seconds. Pass it, or a ``model_copy`` of it, as
    ``room=``.
``exam_out``
    a fresh, not yet created exam folder under the test's ``tmp_path``.
``run_protocol``
    ``run_protocol(protocol, *, patient=None, room=None, faults=(), ...)`` runs a whole exam
    into ``exam_out`` (``exam_out-2``, ... for later calls in the same test) and returns an
    :class:`~fluoroctl.testing.ExamRun`: the typed outcome, the summary, the journal, the
    images, ``.step(id)`` and ``.events_of(kind)``.
``shared_exam``
    session-scoped ``run_protocol`` that runs each distinct call once per session, for many
    tests that look at one exam.

Markers: ``slow`` (whole exams, long runs) and ``links`` (needs real links: ptys, TCP, an MQTT
broker, ``sim serve``); deselect with ``-m "not slow"`` / ``-m "not links"``.

The module imports nothing heavy: pytest loads it in every session, and the scheduler
stack loads only when a fixture runs an exam.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from scheduler.room import Room

    from ._exam import ExamRun, RunProtocol

#: marker name → what it means (shown by ``pytest --markers``)
MARKERS = {
    "slow": "a whole exam or another long run; deselect with -m 'not slow'",
    "links": "needs real links (ptys, TCP, an MQTT broker, `fluoroctl sim serve`); "
    "deselect with -m 'not links'",
    "peers": "needs a real network peer the test starts itself (Orthanc, a worklist or MPPS "
    "SCP) but no real-time timing: runs with the parallel tests",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


@pytest.fixture
def sim_room() -> Room:
    """The built-in simulator room: in-process devices on virtual time."""
    from .._sources import load_room

    return load_room("simulator")


@pytest.fixture
def exam_out(tmp_path: Path) -> Path:
    """A fresh exam folder (not yet created) under the test's ``tmp_path``."""
    return tmp_path / "exam"


@pytest.fixture
def run_protocol(exam_out: Path) -> RunProtocol:
    """Run a whole exam into ``exam_out`` and return it (see the module's docstring)."""
    calls = itertools.count(1)

    def run(protocol: Any, *, out: str | os.PathLike[str] | None = None, **options: Any) -> ExamRun:
        from ._exam import run_protocol as run_exam

        n = next(calls)
        if out is None:
            out = exam_out if n == 1 else exam_out.with_name(f"{exam_out.name}-{n}")
        return run_exam(protocol, out=out, **options)

    return run


@pytest.fixture(scope="session")
def shared_exam(tmp_path_factory: pytest.TempPathFactory) -> RunProtocol:
    """``run_protocol`` whose runs are kept for the session: the same arguments give the
    same (frozen) :class:`~fluoroctl.testing.ExamRun` without running the exam again."""
    done: dict[str, ExamRun] = {}

    def run(protocol: Any, *, out: str | os.PathLike[str] | None = None, **options: Any) -> ExamRun:
        from ._exam import run_protocol as run_exam

        key = repr((protocol, out, sorted(options.items())))
        if key not in done:
            folder = out if out is not None else tmp_path_factory.mktemp("exam") / "exam"
            done[key] = run_exam(protocol, out=folder, **options)
        return done[key]

    return run
