"""Install tests: the wheel and an editable install, each in a new virtual environment.

Marked ``install`` (``pytest -m install`` selects them, ``-m "not install"`` skips them);
they take about a minute and a half together: a wheel build, two new environments, a few
whole exams on virtual time and one over real links at 60x.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .venvs import Venv, build_wheel, copy_source, new_venv, ok


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "install: builds and installs fluoroctl into new virtual environments"
    )


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fluoroctl wheel, built from a copy of this source tree."""
    source = copy_source(tmp_path_factory.mktemp("wheel-build") / "fluoroctl")
    return build_wheel(source, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A new environment with the wheel installed (its dependencies already satisfied)."""
    venv = new_venv(tmp_path_factory.mktemp("wheel-venv") / "venv")
    ok(venv.pip("install", str(wheel), cwd=venv.path))
    yield venv


# A real Modality Worklist SCP (dcmtk's wlmscpfs) for the README's `fluoroctl worklist`.
from tests.hospital.worklist_peer import worklist_peer  # noqa: E402, F401
