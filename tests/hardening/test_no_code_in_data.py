"""Nothing fluoroctl reads (exam folders, room and protocol files, simulator state) can run code.

A static guard beside the behavioural tests (test_sim_state_plain_data.py, test_hostile_yaml_files
.py): the packages must not use a deserialiser that can build arbitrary objects, and every YAML
file goes through the one safe loader in drivers/config.py. A new ``pickle.load`` or
``yaml.load`` anywhere fails here with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from drivers.config import ConfigError, load_yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("drivers", "scheduler", "hardware_sim", "fluoroctl")
#: modules whose loaders can run code or build arbitrary objects from data
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "jsonpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "__import__"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}:{node.lineno}: imports {name}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{where}:{node.lineno}: calls {func.id}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "yaml"
                and func.attr in UNSAFE_YAML
            ):
                found.append(f"{where}:{node.lineno}: yaml.{func.attr}() (use drivers.config)")
            if isinstance(func, ast.Attribute) and func.attr == "load":
                for kw in node.keywords:
                    pickles = isinstance(kw.value, ast.Constant) and kw.value.value is True
                    if kw.arg == "allow_pickle" and pickles:
                        found.append(f"{where}:{node.lineno}: numpy load with allow_pickle=True")
    return found


def test_no_package_module_uses_a_code_running_deserialiser() -> None:
    sources = _sources()
    assert len(sources) > 100  # the scan sees the packages
    problems = [p for path in sources for p in _problems(path)]
    assert problems == []


def test_the_scan_finds_what_it_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport yaml\nimport numpy as np\n"
        "x = yaml.load(open('f'))\ny = eval('1')\nz = np.load('a', allow_pickle=True)\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = _problems(bad)
    finally:
        ROOT = saved
    assert len(found) == 4, found


@pytest.mark.parametrize(
    "text",
    [
        "room: !!python/object/apply:os.system ['touch PWNED']\n",
        "room: !!python/name:os.system\n",
        "x: !!binary aGVsbG8=\ny: !custom 1\n",
    ],
)
def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(path) in str(err.value)
    assert not (tmp_path / "PWNED").exists()
