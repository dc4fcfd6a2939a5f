"""Helpers for the install tests: a copy of the source tree, a wheel built from it, and new
virtual environments that take their dependencies from the running interpreter's.

Nothing here touches the checkout: builds write build/ and *.egg-info into the tree they
build, so they build a copy (which also stands for a user's fresh clone).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Left out of the copy at every level: caches and build output.
_IGNORED_ANYWHERE = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
#: Left out at the top only: the repository, run-time folders and earlier builds.
_IGNORED_AT_TOP = {".git", "build", "dist", "out", "run", ".venv", "venv"}

#: pip and builds may take a while on a loaded machine; an exam runs in seconds.
PIP_TIMEOUT_S = 300.0


def copy_source(dest: Path) -> Path:
    """The source tree as a user's clone would have it (no caches, no build output)."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = Path(directory).resolve() == ROOT
        return {
            n
            for n in names
            if n in _IGNORED_ANYWHERE
            or n.endswith((".egg-info", ".pyc"))
            or (top and n in _IGNORED_AT_TOP)
        }

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def run(
    args: list[str], *, cwd: Path, timeout: float = PIP_TIMEOUT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``proc`` if it exited 0, else an assertion with its command and output."""
    assert proc.returncode == 0, (
        f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n"
        f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    )
    return proc


def build_wheel(source: Path, dist: Path) -> Path:
    """``pip wheel`` of ``source`` into ``dist``, the way a user builds one.

    pip's build isolation installs the build backend pyproject.toml asks for (setuptools)
    from the package index into a temporary environment; the project's dependencies are not
    needed to build (``--no-deps``).
    """
    ok(
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)],
            cwd=source,
        )
    )
    wheels = sorted(dist.glob("fluoroctl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@dataclass
class Venv:
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def pip(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """pip of the running interpreter, installing into this environment."""
        return run([self.python, "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd)

    def fluoroctl(
        self, *args: str, cwd: Path, timeout: float = 240.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The environment's own ``fluoroctl`` console script."""
        return run([str(self.bin / "fluoroctl"), *args], cwd=cwd, timeout=timeout, env=env)

    def evaluate(self, code: str, *, cwd: Path) -> Any:
        """Run ``code`` in this environment's Python; it prints one JSON value."""
        return json.loads(ok(run([self.python, "-c", textwrap.dedent(code)], cwd=cwd)).stdout)


def new_venv(path: Path) -> Venv:
    """A new virtual environment whose dependencies come from the running interpreter's.

    ``--system-site-packages`` covers an interpreter that is not itself in a venv; the .pth
    file covers one that is (a venv's "system" site-packages are its base interpreter's).
    Either way the new environment's own site-packages come first on ``sys.path``, so what
    is installed there is what gets imported. No pip of its own: ``python -m pip`` finds the
    running interpreter's and installs into the new environment.
    """
    ok(
        run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)],
            cwd=path.parent,
        )
    )
    venv = Venv(path)
    own = Path(
        venv.evaluate(
            "import json, sysconfig; print(json.dumps(sysconfig.get_path('purelib')))", cwd=path
        )
    )
    (own / "zz-running-interpreter.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv
