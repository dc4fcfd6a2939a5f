"""The API is typed for its users: mypy --strict checks their code against it (py.typed)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT, checkout_env

PACKAGES = ("fluoroctl", "drivers", "scheduler", "hardware_sim")

USER_CODE = """\
import datetime as dt
from pathlib import Path

import fluoroctl
from fluoroctl.testing import ExamRun, JournalEntry, RunProtocol


def run(out: Path) -> int:
    outcome = fluoroctl.run_exam("ivu-standard", out=out, patient="normal")
    state: fluoroctl.RunState = outcome.state
    step: fluoroctl.StepOutcome = outcome.step("scout")
    status: fluoroctl.StepStatus = step.status
    when: float | None = step.actual_s
    images: tuple[Path, ...] = outcome.images + step.images
    started: dt.datetime = outcome.started
    dose: float = outcome.dose.dap_gy_cm2 + outcome.totals.contrast_delivered_ml
    findings: list[fluoroctl.Finding] = fluoroctl.validate("p.yaml", room="simulator")
    print(state, status, when, images, started, dose, findings)
    return outcome.exit_code


async def notebook(out: str) -> fluoroctl.ExamOutcome:
    return await fluoroctl.run_exam_async(fluoroctl.load_protocol("ivu-standard"), out=out)


def test_mine(run_protocol: RunProtocol) -> None:
    exam: ExamRun = run_protocol("ivu-standard", patient="normal")
    captures: list[JournalEntry] = exam.events_of("capture")
    assert exam.step("scout").status == fluoroctl.StepStatus.DONE and captures
"""

#: each line is a mistake mypy must report (line numbers below USER_CODE)
MISTAKES = """\
def wrong(out: Path) -> None:
    outcome = fluoroctl.run_exam("ivu-standard", out=out)
    code: str = outcome.exit_code
    outcome.state = fluoroctl.RunState.ABORTED
    print(outcome.stpes)
    fluoroctl.run_exam("ivu-standard")
    fluoroctl.run_exam("ivu-standard", out=out, operator="robot")
    late: float = outcome.step("scout").lateness_s
"""


def mypy(tmp_path, code: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user_code.py"
    path.write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(path)],
        cwd=ROOT,  # the project's mypy settings and cache; imports from this checkout
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_correct_use_of_the_api_type_checks(tmp_path):
    proc = mypy(tmp_path, USER_CODE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_catches_mistakes_against_the_api(tmp_path):
    proc = mypy(tmp_path, USER_CODE + "\n\n" + MISTAKES)
    first = len(USER_CODE.splitlines()) + 3  # the line of `def wrong`
    flagged = sorted(
        {int(line.split(":")[1]) - first for line in proc.stdout.splitlines() if ": error:" in line}
    )
    assert flagged == [2, 3, 4, 5, 6, 7], proc.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_ships_py_typed(tmp_path, package):
    """In the sources and in what setuptools puts into the wheel (build_py's output)."""
    assert (ROOT / package / "py.typed").is_file()
    # Build from a copy: building in the checkout would leave an egg-info that importlib
    # metadata finds before the installed distribution.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "-d",
            "lib",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    assert (src / "lib" / package / "py.typed").is_file()
    if package == "fluoroctl":  # found by the packages.find include, with its subpackage
        assert (src / "lib/fluoroctl/testing/plugin.py").is_file()
