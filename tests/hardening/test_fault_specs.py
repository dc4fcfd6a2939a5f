"""Hazard: ``--fault`` times that are not times (NaN, infinite, negative, absurdly far).

``generator@nan`` was accepted and armed a timer at NaN; ``-5``, ``1e300``, ``T+1e9`` or
``100000h`` were accepted as well. Each is now a :class:`FaultSpecError` naming the spec, and
the CLI refuses it with exit 2 and one line, before anything is created or opened.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hardware_sim.faults import MAX_FAULT_TIME_S, FaultSpecError, parse_fault, parse_faults

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"
LINKS_ROOM = ROOT / "configs/rooms/sim-links.yaml"

BAD_TIMES = [
    "generator@nan",
    "generator@NaN",
    "generator@inf",
    "generator@-inf",
    "generator@infinity",
    "generator@-5",
    "generator@-0.5s",
    "generator@1e300",
    "generator@1e9",
    "injector.occlusion@T+1e9",
    "injector.occlusion@T+nan",
    "injector.occlusion@T+-5",
    "table.stall@25h",
    "table.stall@100000h",
    "table.stall@1441min",
    "table.stall@86401",
]


@pytest.mark.parametrize("spec", BAD_TIMES)
def test_impossible_fault_times_are_refused_naming_the_spec(spec):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault(spec)
    message = str(caught.value)
    assert repr(spec) in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "at"),
    [
        ("generator@0", 0.0),
        ("generator@24h", MAX_FAULT_TIME_S),
        ("table.stall@1h", 3600.0),
        ("injector.air@T+2.5", 2.5),
        ("generator@1e2", 100.0),
    ],
)
def test_times_up_to_a_day_are_accepted(spec, at):
    assert parse_fault(spec).at_s == at


def test_an_unparseable_time_names_the_spec():
    with pytest.raises(FaultSpecError, match=r"'generator@soon'.*invalid time"):
        parse_fault("generator@soon")


def test_absurd_counts_are_refused():
    with pytest.raises(FaultSpecError, match=r"'generator\*100000@5'"):
        parse_fault("generator*100000@5")


def test_parse_faults_refuses_link_faults_where_there_are_no_links():
    specs = ["generator@5", "carm.link_close@10"]
    assert [s.kind for s in parse_faults(specs)] == ["generator", "carm.link_close"]
    with pytest.raises(FaultSpecError, match=r"'carm\.link_close@10'.*sim serve"):
        parse_faults(specs, links=False)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sim_serve_refuses_a_bad_fault_before_serving_anything(tmp_path):
    endpoints = tmp_path / "serve" / "endpoints.json"
    proc = cli(
        "sim",
        "serve",
        "--room",
        str(LINKS_ROOM),
        "--endpoints",
        str(endpoints),
        "--fault",
        "generator@nan",
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'generator@nan'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "serve").exists(), "nothing may be created for a refused fault"
    assert "Mosquitto" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("spec", ["generator@nan", "generator@soon", "carm.link_close@10"])
def test_run_refuses_a_bad_fault_with_exit_2_and_creates_nothing(tmp_path, spec):
    out = tmp_path / "exam"
    proc = cli("run", str(PROTOCOL), "--fault", spec, "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and repr(spec) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists(), "a refused run must not create its output folder"
