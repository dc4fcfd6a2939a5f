"""A wheel built from this tree and installed into a new environment runs the standard exam
from a directory that has nothing of fluoroctl in it (issue 11, item 8)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from .venvs import ROOT, Venv, ok

pytestmark = pytest.mark.install

DATA = "scheduler/_data"


def acquisitions(protocol: Path) -> list[str]:
    """Ids of the steps that each leave one image: what a completed exam must have written."""
    steps = yaml.safe_load(protocol.read_text())["protocol"]["steps"]
    return [s["id"] for s in steps if s["type"] in ("capture", "fluoro")]


def check_completed_exam(out: Path, protocol: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed", summary.get("reason")
    images = sorted(out.glob("[0-9][0-9][0-9]-*.dcm"))
    expected = acquisitions(protocol)
    assert [p.stem.split("-", 1)[1] for p in images] == expected
    assert summary["totals"]["images"] == len(expected)


def installed_paths(venv: Venv, cwd: Path) -> dict[str, str]:
    return dict(
        venv.evaluate(
            """
            import json, scheduler, scheduler.paths as p
            print(json.dumps({
                "package": scheduler.__file__,
                "checkout": str(p.checkout_root()),
                "config_base": str(p.CONFIG_BASE),
                "protocols": str(p.shipped_dir("protocols")),
                "schemas": str(p.schema_dir()),
            }))
            """,
            cwd=cwd,
        )
    )


def test_the_wheel_carries_every_config_file_and_schema(wheel: Path) -> None:
    expected = {
        f"{DATA}/{p.relative_to(ROOT).as_posix()}": p.read_bytes()
        for p in sorted((ROOT / "configs").rglob("*.yaml"))
    }
    expected |= {
        f"{DATA}/schemas/{p.name}": p.read_bytes()
        for p in sorted((ROOT / "docs").glob("*-schema.json"))
    }
    assert any(name.endswith("patient-schema.json") for name in expected)
    with zipfile.ZipFile(wheel) as whl:
        shipped = {n: whl.read(n) for n in whl.namelist() if n.startswith(f"{DATA}/")}
    assert shipped == expected


def test_the_installed_package_is_the_wheel_and_finds_its_own_data(
    installed: Venv, tmp_path: Path
) -> None:
    found = installed_paths(installed, tmp_path)
    assert Path(found["package"]).is_relative_to(installed.path), found  # not the checkout
    assert found["checkout"] == "None"
    assert Path(found["config_base"]) == Path(found["package"]).parent / "_data"
    assert sorted(p.name for p in Path(found["protocols"]).glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "configs" / "protocols").glob("*.yaml")
    )
    assert sorted(p.name for p in Path(found["schemas"]).glob("*.json")) == sorted(
        p.name for p in (ROOT / "docs").glob("*-schema.json")
    )


def test_standard_exam_runs_from_an_unrelated_directory(installed: Venv, tmp_path: Path) -> None:
    """The built-in simulator room (no --room) and ``--patient normal`` come from the wheel."""
    protocol = Path(installed_paths(installed, tmp_path)["protocols"]) / "ivu-standard.yaml"
    ok(
        installed.fluoroctl(
            "run", str(protocol), "--patient", "normal", "--out", "exam", cwd=tmp_path
        )
    )
    check_completed_exam(tmp_path / "exam", protocol)


def test_shipped_protocols_and_rooms_go_by_name(installed: Venv, tmp_path: Path) -> None:
    """``fluoroctl plan ivu-standard``: a wheel user has no configs/ folder to give a path in.

    ``run`` takes its protocol and ``--room`` through the same argument types
    (tests/unit/test_paths.py checks that); the exam itself ran above.
    """
    plan = ok(installed.fluoroctl("plan", "ivu-standard", "--room", "simulator", cwd=tmp_path))
    assert "Plan: IVU standard" in plan.stdout
    assert "duration" in plan.stdout


def test_every_shipped_file_validates_in_the_installed_package(
    installed: Venv, tmp_path: Path
) -> None:
    base = Path(installed_paths(installed, tmp_path)["config_base"]) / "configs"
    files = sorted(str(p) for p in base.glob("*/*.yaml"))
    assert len(files) == len(list((ROOT / "configs").glob("*/*.yaml")))
    out = ok(installed.fluoroctl("validate", *files, cwd=tmp_path)).stdout
    assert out.count(": ok (") == len(files)
    assert out.count("ok (patient)") == len(list((ROOT / "configs" / "patients").glob("*.yaml")))
