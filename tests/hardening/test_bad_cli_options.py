"""Hazard: absurd numbers in command-line options (a time scale of NaN, a fault at an
infinite time) got past the checks, or were found only after the exam folder was made.

Each is one line, exit 2, and nothing is created.
"""

from __future__ import annotations

import pytest

from scheduler.cli import main

from ..exam.conftest import ROOT

STANDARD = str(ROOT / "configs/protocols/ivu-standard.yaml")
LINKS_ROOM = str(ROOT / "configs/rooms/sim-links.yaml")


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "0", "-60"])
def test_a_time_scale_that_is_not_a_positive_number_is_refused(tmp_path, capsys, scale):
    out = tmp_path / "out"
    rc = main(["run", STANDARD, "--room", LINKS_ROOM, f"--time-scale={scale}", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"error: --time-scale must be a positive number, got {float(scale):g}"]
    assert not out.exists()


@pytest.mark.parametrize(
    "spec",
    [
        "generator@nan",
        "generator@inf",
        "generator@-5",
        "generator@1e300",
        "injector.air@T+1e9",
        "generator@25h",
    ],
)
def test_a_fault_at_an_impossible_time_is_refused_before_anything_is_made(tmp_path, capsys, spec):
    out = tmp_path / "out"
    rc = main(["run", STANDARD, "--out", str(out), "--fault", spec])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and spec in err[0], err
    assert not out.exists()
