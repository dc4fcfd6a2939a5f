"""Shared fixtures: paths to the shipped configs and a runner for coroutines on virtual time."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers import VirtualTimeEventLoop

ROOT = Path(__file__).resolve().parent.parent
#: tests on real links in real or 60×-scaled time (ptys, MQTT, `sim serve`): their timing is
#: the wall's, so CI runs them one at a time after the parallel run (``-m links``)
REAL_TIME_LINKS = (
    "tests/e2e/",
    "tests/links/",
    "tests/hardening/test_abort_over_links.py",
    "tests/hardening/test_injector_faults_over_links.py",
    "tests/hardening/test_injector_state_from_previous_exam.py",
    "tests/wire/test_fast_paths.py",
)


#: the longest-running files (a fresh install, whole exams killed and resumed): run first, so
#: that in a parallel run no worker is left alone with one of them at the end
LONG_FIRST = (
    "tests/install/",
    "tests/exam/test_resume.py",
    "tests/hardening/test_faults_once_per_exam.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        where = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        if where.startswith(REAL_TIME_LINKS):
            item.add_marker(pytest.mark.links)

    def long_first(item: pytest.Item) -> bool:
        where = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        return not where.startswith(LONG_FIRST)

    items.sort(key=long_first)  # stable: each file keeps its own order


T = TypeVar("T")


#: where tests keep what a person should look at afterwards (screenshots, contact sheets):
#: build/test-artifacts/<test file>/<test>, or under $FLUOROCTL_TEST_ARTIFACTS
ARTIFACTS_ENV = "FLUOROCTL_TEST_ARTIFACTS"


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A fresh directory for this test's artifacts, kept after the run (not a tmp dir)."""
    base = Path(os.environ.get(ARTIFACTS_ENV) or ROOT / "build" / "test-artifacts")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    where = base / Path(str(request.node.fspath)).stem / name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def run_virtual() -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """Run ``factory()`` to completion on a fresh virtual-time loop."""

    def run(factory: Callable[[], Awaitable[T]]) -> T:
        loop = VirtualTimeEventLoop()
        try:
            return loop.run_until_complete(factory())
        finally:
            loop.close()

    return run
