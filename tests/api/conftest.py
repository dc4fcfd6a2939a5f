"""Helpers for the public API tests: scripts and CLI runs in fresh processes.

A fresh process imports fluoroctl from this checkout (``PYTHONPATH``), not from whatever is
installed, and runs from an unrelated directory, as a user's script would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment with this checkout first on the import path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_script(
    folder: Path, code: str, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Write ``code`` to ``folder/script.py`` and run ``python script.py ARGS`` there."""
    script = folder / "script.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=folder,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def cli(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m scheduler.cli ARGS`` (the ``fluoroctl`` command) in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=cwd,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
