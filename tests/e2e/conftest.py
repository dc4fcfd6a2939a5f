"""Whole exams over real links: `fluoroctl sim serve` in a subprocess, `fluoroctl run` against it.

The fixture starts the simulated room (which starts its own Mosquitto), waits for its endpoints
file, and stops it (SIGTERM, then SIGKILL) after the test. Time-scaled so an exam takes ~25 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINKS_ROOM = ROOT / "configs/rooms/sim-links.yaml"
TIME_SCALE = 60.0


def cli(*args: str, timeout: float = 240.0, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass
class SimServe:
    proc: subprocess.Popen[str]
    endpoints: Path
    log: Path

    @property
    def info(self) -> dict[str, Any]:
        return json.loads(self.endpoints.read_text())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def run_args(self) -> list[str]:
        return ["--room", str(LINKS_ROOM), "--endpoints", str(self.endpoints)]


def start_sim_serve(tmp: Path, *extra: str, scale: float = TIME_SCALE) -> SimServe:
    endpoints = tmp / "sim-serve" / "endpoints.json"
    log = tmp / "sim-serve.log"
    endpoints.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler.cli",
                "sim",
                "serve",
                "--room",
                str(LINKS_ROOM),
                "--endpoints",
                str(endpoints),
                "--time-scale",
                str(scale),
                *extra,
            ],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while not endpoints.exists():
        if proc.poll() is not None:
            raise AssertionError(f"sim serve exited {proc.returncode}: {log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sim serve not ready in 60 s: {log.read_text()}")
        time.sleep(0.1)
    return SimServe(proc, endpoints, log)


def stop_sim_serve(serve: SimServe) -> None:
    if serve.proc.poll() is None:
        serve.proc.send_signal(signal.SIGTERM)
        try:
            serve.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            serve.proc.kill()
            serve.proc.wait(timeout=5)


@pytest.fixture
def sim_serve(tmp_path: Path) -> Iterator[Any]:
    """``sim_serve(*extra_args)`` starts a simulated room over links; stopped after the test."""
    started: list[SimServe] = []

    def start(*extra: str, scale: float = TIME_SCALE) -> SimServe:
        serve = start_sim_serve(tmp_path, *extra, scale=scale)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        stop_sim_serve(serve)
