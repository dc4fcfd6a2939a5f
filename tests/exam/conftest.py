"""Whole exams on the in-process simulator, each run once per test session.

The exams come from fluoroctl's own pytest plugin (``fluoroctl.testing.plugin``): the
session fixtures below are ``shared_exam`` calls, so every test here sees the run a CI user's
test would see.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fluoroctl.testing import ExamRun, RunProtocol

ROOT = Path(__file__).resolve().parents[2]
#: a fixed wall-clock start, so DICOM dates and times are the same in every run
WALL_ANCHOR = dt.datetime(2026, 3, 4, 9, 30, tzinfo=dt.UTC)


def pytest_configure(config: pytest.Config) -> None:
    # Installed fluoroctl loads its plugin by the pytest11 entry point; a checkout whose
    # installed metadata predates the entry point registers it here, under the same name.
    if not config.pluginmanager.has_plugin("fluoroctl"):
        from fluoroctl.testing import plugin

        config.pluginmanager.register(plugin, "fluoroctl")


@pytest.fixture(scope="session")
def standard(shared_exam: RunProtocol) -> ExamRun:
    return shared_exam("ivu-standard", wall_anchor=WALL_ANCHOR)


@pytest.fixture(scope="session")
def accelerated(shared_exam: RunProtocol) -> ExamRun:
    return shared_exam("ivu-accelerated", wall_anchor=WALL_ANCHOR)


@pytest.fixture(scope="session")
def obstruction(shared_exam: RunProtocol) -> ExamRun:
    return shared_exam("ivu-obstruction", patient="left-obstruction", wall_anchor=WALL_ANCHOR)


@pytest.fixture(scope="session")
def nephrotomography(shared_exam: RunProtocol) -> ExamRun:
    return shared_exam("ivu-nephrotomography", wall_anchor=WALL_ANCHOR)
