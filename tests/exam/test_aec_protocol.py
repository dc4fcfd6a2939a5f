"""A protocol asks for AEC (``technique.aec``): the chambers end each radiograph at the target
exposure index, whatever the nominal mAs, and the request survives the wire encoding."""

from __future__ import annotations

from typing import Any

import pydicom
import pytest

import fluoroctl
from drivers import Technique
from drivers.carm import AecMode
from drivers.remote._fields import technique_fields, technique_from
from scheduler.protocol import Protocol, load_protocol

from .conftest import ROOT


def with_aec(nominal_mas: float) -> Protocol:
    data: dict[str, Any] = load_protocol(
        ROOT / "configs/protocols/ivu-accelerated.yaml"
    ).model_dump(mode="json", exclude_unset=True)
    data["technique"] = {**data["technique"], "mas": nominal_mas, "aec": {"target_ei": 250}}
    return Protocol.model_validate(data)


@pytest.mark.parametrize("nominal_mas", [8.0, 80.0])
def test_aec_films_reach_the_target_index_whatever_the_nominal_mas(tmp_path, nominal_mas):
    outcome = fluoroctl.run_exam(with_aec(nominal_mas), out=tmp_path / "exam")
    assert outcome.summary["state"] == "completed"
    supine = [s for s in outcome.summary["steps"] if s["files"] and s["id"] != "prone"]
    for step in supine:
        assert step["exposure_index"] == pytest.approx(250.0, rel=0.25), step["id"]
        ds = pydicom.dcmread(tmp_path / "exam" / step["files"][0], stop_before_pixels=True)
        assert float(ds.TargetExposureIndex) == 250.0
        # the chambers chose the mAs: not the nominal one
        assert abs(float(ds.ExposureInuAs) / 1000.0 - nominal_mas) > 0.2 * nominal_mas


def test_the_aec_request_crosses_the_wire_intact():
    aec = Technique.from_mas(75.0, 20.0, 400.0, aec=AecMode(("left", "right"), 320.0, 800.0))
    assert technique_from(technique_fields(aec)) == aec
    plain = Technique.from_mas(75.0, 20.0, 400.0)
    assert "aec_fields" not in technique_fields(plain)
    assert technique_from(technique_fields(plain)) == plain
