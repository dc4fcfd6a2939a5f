"""The pytest plugin, as a CI user meets it: a test file of their own, run by pytest.

Every run is a pytest subprocess (``pytester``) importing fluoroctl from this checkout. One
run loads the plugin explicitly (``-p fluoroctl.testing.plugin``, with the entry point's
name blocked so an installed entry point cannot register it twice); the other finds it the
way an installed fluoroctl offers it: by the ``pytest11`` entry point that pyproject.toml
declares, read from distribution metadata made from pyproject.toml itself.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT

#: the user's test file from docs/api.md (15 lines)
USER_TEST = """\
import pytest

PROTOCOL = "protocols/my-ivu.yaml"  # the protocol file under test


@pytest.mark.slow
def test_my_protocol_runs_on_time(run_protocol):
    exam = run_protocol(PROTOCOL, patient="normal")
    assert exam.outcome.ok, exam.outcome.reason
    for step in exam.outcome.steps:
        if step.planned_after_injection_s is not None:
            assert abs(step.lateness_s) <= 0.05, step
    assert len(exam.images) == len(exam.events_of("capture")) == 5
    assert exam.outcome.contrast_delivered_ml == pytest.approx(40.0, abs=0.01)
    assert exam.step("film-7min").status == "done"
"""

#: fixtures and markers beyond the docs example
MORE_TESTS = """\
import pytest

runs = []


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_shared_exam_runs_once(shared_exam, n):
    runs.append(shared_exam("protocols/my-ivu.yaml"))
    assert runs[0] is runs[-1]
    assert runs[0].events[0].kind == "exam_started"


def test_sim_room_and_exam_out(sim_room, exam_out, tmp_path):
    assert sim_room.clock == "virtual"
    assert {sim_room.devices.carm, sim_room.devices.injector} == {"sim://carm", "sim://injector"}
    assert exam_out.parent == tmp_path and not exam_out.exists()
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A CI user's repository: their protocol file and their tests."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    (pytester.path / "protocols").mkdir()
    shutil.copy(
        ROOT / "configs/protocols/ivu-accelerated.yaml", pytester.path / "protocols/my-ivu.yaml"
    )
    pytester.makepyfile(test_my_protocol=USER_TEST)
    return pytester


def test_the_docs_example_is_this_file_of_at_most_15_lines():
    assert len(USER_TEST.splitlines()) <= 15
    assert f"```python\n{USER_TEST}```" in (ROOT / "docs/api.md").read_text()


def docs_blocks(tag: str) -> list[str]:
    """The code blocks of docs/api.md announced by ``<!-- tag -->``."""
    parts = (ROOT / "docs/api.md").read_text().split(f"<!-- {tag} -->\n```python\n")[1:]
    return [part.split("```\n", 1)[0] for part in parts]


def test_a_users_test_files_pass_with_the_plugin(user_project):
    examples = docs_blocks("pytest")
    assert examples[0] == USER_TEST and len(examples) == 2
    user_project.makepyfile(test_more=MORE_TESTS, test_docs_faults=examples[1])
    result = user_project.runpytest_subprocess(
        "-p", "no:fluoroctl", "-p", "fluoroctl.testing.plugin", "--strict-markers"
    )
    result.assert_outcomes(passed=5)


def test_a_failing_protocol_fails_the_users_test(user_project):
    broken = user_project.path / "protocols/my-ivu.yaml"
    # The last film comes 7 min after the start but the exam now injects 20 mL, not 40.
    broken.write_text(broken.read_text().replace("volume_ml: 40", "volume_ml: 20"))
    result = user_project.runpytest_subprocess(
        "-p", "no:fluoroctl", "-p", "fluoroctl.testing.plugin"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*contrast_delivered_ml*"])


def installed_metadata(site: Path) -> None:
    """fluoroctl's distribution metadata with the entry points pyproject.toml declares, as
    ``pip install`` writes them; first on the path, it is the one importlib.metadata finds."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = site / f"fluoroctl-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: fluoroctl\nVersion: {project['version']}\n"
    )
    groups = {"console_scripts": project.get("scripts", {}), **project["entry-points"]}
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items()) + "\n"
            for group, eps in groups.items()
        )
    )


def test_the_entry_point_loads_the_plugin(user_project, monkeypatch):
    site = user_project.path / "site"
    installed_metadata(site)
    monkeypatch.setenv("PYTHONPATH", f"{site}:{ROOT}")
    markers = user_project.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.slow: *", "@pytest.mark.links: *"])
    result = user_project.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # Without the entry point the fixtures are unknown: it is the entry point that served them.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    without = user_project.runpytest_subprocess("-p", "no:fluoroctl")
    without.stdout.fnmatch_lines(["*fixture 'run_protocol' not found*"])
