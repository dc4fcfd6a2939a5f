"""docs/api.md's runnable examples run, each as a script in a fresh process."""

from __future__ import annotations

import pytest

from .conftest import ROOT, run_script


def runnable() -> list[str]:
    parts = (ROOT / "docs/api.md").read_text().split("<!-- runnable -->\n```python\n")[1:]
    return [part.split("```\n", 1)[0] for part in parts]


def test_the_docs_have_runnable_examples():
    assert len(runnable()) == 3


@pytest.mark.parametrize("n", range(3))
def test_a_docs_example_runs(tmp_path, n):
    proc = run_script(tmp_path, runnable()[n])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "the example prints what it shows"
