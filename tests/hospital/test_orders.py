"""Orders without a worklist (flags, order file) and weight-based contrast, on the in-process
simulator (virtual time)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from scheduler.plan import rehearse
from scheduler.protocol import load_protocol
from scheduler.room import load_room
from scheduler.weight_dose import weigh
from tests.conftest import ROOT
from tests.hospital.worklist_peer import fluoroctl

ACCELERATED = (ROOT / "configs/protocols/ivu-accelerated.yaml").read_text()
FIXED_PHASE = "        - {flow_ml_s: 1.33, volume_ml: 40}\n"
assert FIXED_PHASE in ACCELERATED


def weight_based(
    tmp_path: Path, per_kg: float, maximum: float, minimum: float | None = None
) -> Path:
    bounds = f"      volume_ml_per_kg: {per_kg}\n      max_volume_ml: {maximum}\n"
    if minimum is not None:
        bounds += f"      min_volume_ml: {minimum}\n"
    text = ACCELERATED.replace(FIXED_PHASE, "        - {flow_ml_s: 1.33}\n" + bounds)
    path = tmp_path / "weighted.yaml"
    path.write_text(text)
    return path


def identity_of(out: Path) -> set[tuple[object, ...]]:
    return {
        (
            str(ds.PatientName),
            ds.PatientID,
            ds.PatientBirthDate,
            ds.PatientSex,
            float(ds.PatientWeight),
            ds.AccessionNumber,
        )
        for ds in (pydicom.dcmread(f) for f in sorted(out.glob("*.dcm")))
    }


def journal(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_flags_and_order_file_give_the_same_identity(tmp_path):
    flags = tmp_path / "flags"
    code = fluoroctl(
        "run", "ivu-accelerated", "--out", str(flags),
        "--patient-id", "MRN-77", "--patient-name", "Smith^Ann", "--birth-date", "1961-11-05",
        "--sex", "F", "--weight-kg", "59.5", "--accession", "A-77",
    )  # fmt: skip
    assert code == 0
    order_file = tmp_path / "order.yaml"
    order_file.write_text(
        "order:\n  patient_id: MRN-77\n  patient_name: Smith^Ann\n  birth_date: 1961-11-05\n"
        "  sex: F\n  weight_kg: 59.5\n  accession_number: A-77\n"
    )
    filed = tmp_path / "filed"
    assert (
        fluoroctl("run", "ivu-accelerated", "--out", str(filed), "--order-file", str(order_file))
        == 0
    )

    expected = {("Smith^Ann", "MRN-77", "19611105", "F", 59.5, "A-77")}
    assert identity_of(flags) == expected
    assert identity_of(filed) == expected
    for out, source in ((flags, "command-line"), (filed, "order-file")):
        summary = json.loads((out / "summary.json").read_text())
        assert summary["identity"]["source"] == source
        assert summary["identity"]["patient_name"] == "Smith^Ann"


def test_without_an_order_the_simulator_keeps_its_scenario_identity(tmp_path):
    out = tmp_path / "exam"
    assert fluoroctl("run", "ivu-accelerated", "--out", str(out)) == 0
    (name, pid, *_rest) = next(iter(identity_of(out)))
    assert pid.startswith("SIM-") and name != "Anonymous"
    assert json.loads((out / "summary.json").read_text())["identity"]["source"] == "scenario"


def test_a_bad_order_file_is_one_line_naming_file_line_and_field(tmp_path, capsys):
    order_file = tmp_path / "order.yaml"
    order_file.write_text("order:\n  patient_id: MRN-77\n  patient_name: Smith^Ann\n  sex: X\n")
    out = tmp_path / "exam"
    assert (
        fluoroctl("run", "ivu-accelerated", "--out", str(out), "--order-file", str(order_file)) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{order_file}:4: order.sex" in err
    assert not out.exists()


def test_bad_and_conflicting_identity_flags_are_refused(tmp_path, capsys):
    out = tmp_path / "exam"
    assert fluoroctl("run", "ivu-accelerated", "--out", str(out), "--patient-id", "X") == 2
    assert "--patient-name" in capsys.readouterr().err
    assert fluoroctl(
        "run", "ivu-accelerated", "--out", str(out), "--patient-id", "X", "--patient-name", "Y",
        "--birth-date", "1961-13-05",
    ) == 2  # fmt: skip
    assert "--birth-date" in capsys.readouterr().err
    order_file = tmp_path / "o.yaml"
    order_file.write_text("order: {patient_id: A, patient_name: B}\n")
    assert fluoroctl(
        "run", "ivu-accelerated", "--out", str(out), "--patient-id", "X", "--patient-name", "Y",
        "--order-file", str(order_file),
    ) == 2  # fmt: skip
    assert "not both" in capsys.readouterr().err
    assert not out.exists()


def test_weight_based_volume_is_computed_clamped_and_journaled(tmp_path):
    protocol = weight_based(tmp_path, per_kg=1.0, maximum=60)
    for weight, volume, clamp in ((48.0, 48.0, None), (82.0, 60.0, "protocol max_volume_ml 60 mL")):
        out = tmp_path / f"w{weight:g}"
        code = fluoroctl(
            "run", str(protocol), "--out", str(out),
            "--patient-id", "W", "--patient-name", "Weight^Test", "--weight-kg", f"{weight}",
        )  # fmt: skip
        assert code == 0
        lines = journal(out)
        dose = next(e for e in lines if e["kind"] == "contrast_by_weight")
        assert dose["step"] == "inject"
        assert dose["data"]["computed_ml"] == weight * 1.0
        assert dose["data"]["volume_ml"] == volume
        assert dose["data"]["limited_by"] == clamp
        arm = next(e for e in lines if e["kind"] == "command" and e["data"]["command"] == "arm")
        assert arm["data"]["volume_ml"] == volume
        assert lines.index(dose) < lines.index(arm)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["contrast_by_weight"]["volume_ml"] == volume
        assert summary["totals"]["contrast_delivered_ml"] == pytest.approx(volume, abs=0.5)


def test_the_room_and_the_floor_clamp_the_weight_based_volume(tmp_path):
    protocol = load_protocol(weight_based(tmp_path, per_kg=1.5, maximum=200, minimum=30))
    room = load_room(ROOT / "configs/rooms/simulator.yaml")  # max_volume_ml 150
    resolved, weighted = weigh(protocol, room.limits, 120.0, weight_source="test")
    assert weighted is not None and weighted.computed_ml == 180.0
    assert (weighted.volume_ml, weighted.limited_by) == (150.0, "room max_volume_ml 150 mL")
    assert resolved.inject_step is not None and resolved.inject_step.volume_ml == 150.0
    _, light = weigh(protocol, room.limits, 12.0, weight_source="test")
    assert light is not None and (light.volume_ml, light.limited_by) == (
        30.0,
        "protocol min_volume_ml 30 mL",
    )


def test_plan_shows_the_weight_based_volume(tmp_path, capsys):
    protocol = weight_based(tmp_path, per_kg=0.5, maximum=100)
    plan = rehearse(load_protocol(protocol), load_room(ROOT / "configs/rooms/simulator.yaml"))
    assert plan.contrast_by_weight is not None
    weight = plan.contrast_by_weight["weight_kg"]
    assert plan.contrast_by_weight["computed_ml"] == pytest.approx(round(0.5 * weight, 1))
    assert plan.contrast_ml == plan.contrast_by_weight["volume_ml"]
    assert fluoroctl("plan", str(protocol)) == 0
    out = capsys.readouterr().out
    assert f"0.5 mL/kg × {weight:g} kg" in out


def test_a_weight_based_protocol_without_a_weight_is_refused_before_anything(tmp_path, capsys):
    protocol = weight_based(tmp_path, per_kg=1.0, maximum=60)
    room = ROOT / "configs/rooms/sim-links.yaml"  # real links: no simulated patient's weight
    out = tmp_path / "exam"
    code = fluoroctl(
        "run", str(protocol), "--room", str(room), "--out", str(out),
        "--patient-id", "W", "--patient-name", "No^Weight",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "volume_ml_per_kg" in err and "--weight-kg" in err and str(protocol) in err
    assert not out.exists()


def test_weight_based_protocol_validation(tmp_path, capsys):
    both = tmp_path / "both.yaml"
    both.write_text(
        ACCELERATED.replace(
            FIXED_PHASE, FIXED_PHASE + "      volume_ml_per_kg: 1\n      max_volume_ml: 80\n"
        )
    )
    assert fluoroctl("validate", str(both)) == 2
    assert "not both" in capsys.readouterr().err
    no_max = tmp_path / "nomax.yaml"
    no_max.write_text(
        ACCELERATED.replace(FIXED_PHASE, "        - {flow_ml_s: 1.33}\n      volume_ml_per_kg: 1\n")
    )
    assert fluoroctl("validate", str(no_max)) == 2
    assert "max_volume_ml" in capsys.readouterr().err


def test_a_resumed_exam_keeps_its_order_in_the_summary(tmp_path):
    import signal

    from tests.hardening.exam_folders import cli as run_cli

    order = tmp_path / "order.yaml"
    order.write_text(
        "order:\n  patient_id: MRN-31\n  patient_name: Poe^Ada\n  accession_number: A-31\n"
    )
    out = tmp_path / "exam"
    killed = run_cli(
        "run", "ivu-accelerated", "--order-file", str(order), "--out", str(out), crash_after=20
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run_cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    identity = json.loads((out / "summary.json").read_text())["identity"]
    assert (identity["patient_id"], identity["accession_number"]) == ("MRN-31", "A-31")
    assert identity["source"] == "order-file" and identity["order"]["patient_name"] == "Poe^Ada"
