"""One build step beyond pyproject.toml: the wheel carries configs/ and the JSON Schemas.

configs/ (rooms, protocols, patients) stays at the top of the repository, where users edit it;
the build copies it, and docs/*-schema.json, into ``scheduler/_data/`` so an installed wheel
finds them without a checkout (``scheduler.paths``). Why a build step and not package-data:
docs/decisions/0011-configs-in-the-wheel.md. Everything else lives in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: Where the copies go inside the built package tree (scheduler.paths.PACKAGE_DATA).
DATA_DIR = Path("scheduler", "_data")


def shipped_data() -> list[tuple[str, str]]:
    """(source in the checkout, destination under the build dir), relative paths, sorted.

    Refuses to build without them: a wheel missing its simulator room would install cleanly
    and fail at the first ``fluoroctl run``.
    """
    pairs: list[tuple[str, str]] = []
    configs = sorted(p for p in Path("configs").rglob("*.yaml") if p.is_file())
    schemas = sorted(Path("docs").glob("*-schema.json"))
    if not configs or not schemas:
        raise SystemExit(
            "fluoroctl build: configs/*/*.yaml and docs/*-schema.json must be present "
            "(build from a checkout or from the sdist)"
        )
    for path in configs:
        pairs.append((str(path), str(DATA_DIR / path)))
    for path in schemas:
        pairs.append((str(path), str(DATA_DIR / "schemas" / path.name)))
    return pairs


class BuildPyWithData(build_py):  # type: ignore[misc]  # untyped in older setuptools
    """``build_py`` that also copies :func:`shipped_data` into the build directory."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads configs/ in the checkout itself
            return
        for source, dest in shipped_data():
            target = os.path.join(self.build_lib, dest)
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not self.editable_mode:
            outputs += [os.path.join(self.build_lib, dest) for _, dest in shipped_data()]
        return outputs

    def get_source_files(self) -> list[str]:
        # The sdist lists these too, so a wheel built from the sdist carries them.
        return [*super().get_source_files(), *(source for source, _ in shipped_data())]


setup(cmdclass={"build_py": BuildPyWithData})
