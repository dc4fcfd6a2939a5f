"""The template vendor driver (examples/vendor-injector) made importable and registered.

``acme_kit`` puts its sources on sys.path and registers its ``fluoroctl.backends`` entry point
the way pip would: a ``*.dist-info`` folder with ``entry_points.txt`` in a sys.path folder, so
``importlib.metadata.entry_points`` finds ``acme`` exactly as for an installed package.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACME_SRC = ROOT / "examples" / "vendor-injector" / "src"
ACME_PYPROJECT = ROOT / "examples" / "vendor-injector" / "pyproject.toml"


def write_dist_info(folder: Path) -> Path:
    """A dist-info for acme-injector whose entry points are those of its pyproject.toml."""
    import tomllib

    project = tomllib.loads(ACME_PYPROJECT.read_text())["project"]
    dist = folder / f"acme_injector-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, eps in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return dist


@pytest.fixture
def acme_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    write_dist_info(site)
    monkeypatch.syspath_prepend(str(ACME_SRC))
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m == "acme_injector" or m.startswith("acme_injector.")]:
        del sys.modules[name]
