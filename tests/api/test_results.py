"""The API's results are typed, frozen and the same as what the exam folder records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import pytest

import fluoroctl
from fluoroctl import ConfigError, ExamOutcome, RunState, StepOutcome, StepStatus

from .conftest import ROOT


@pytest.fixture(scope="module")
def accelerated(tmp_path_factory: pytest.TempPathFactory) -> ExamOutcome:
    return fluoroctl.run_exam("ivu-accelerated", out=tmp_path_factory.mktemp("api") / "exam")


def test_the_outcome_is_typed_and_says_what_the_folder_says(accelerated):
    o = accelerated
    assert o.state is RunState.COMPLETED and o.exit_code == 0 and o.ok
    assert isinstance(o.started, dt.datetime) and isinstance(o.injection_start, dt.datetime)
    assert all(isinstance(s, StepOutcome) and isinstance(s.status, StepStatus) for s in o.steps)
    assert [s.id for s in o.steps] == [
        s.id for s in fluoroctl.load_protocol("ivu-accelerated").steps
    ]
    assert o.images == tuple(sorted(o.out_dir.glob("[0-9][0-9][0-9]-*.dcm")))
    assert all(p.is_absolute() for p in o.images)
    film = o.step("film-4min")
    assert film.status is StepStatus.DONE and film.finished
    assert film.images == (o.out_dir / "003-film-4min.dcm",)
    assert film.actual_after_injection_s == pytest.approx(240.0, abs=0.05)
    assert film.planned_s is not None and film.commanded_s is not None
    assert o.contrast_delivered_ml == pytest.approx(40.0, abs=0.01)
    assert o.dose.radiographic_exposures == o.totals.radiographic_exposures == 5
    assert o.dose.reference_air_kerma_mgy == o.totals.reference_air_kerma_mgy > 0
    assert o.unfinished_steps == () and dict(o.abort_confirmations) == {}
    # Read back from the folder, the same outcome (exit code derived by the same rules).
    assert fluoroctl.read_outcome(o.out_dir) == o


def test_the_outcome_cannot_be_changed(accelerated):
    with pytest.raises(dataclasses.FrozenInstanceError):
        accelerated.state = RunState.ABORTED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        accelerated.steps[0].status = StepStatus.MISSED  # type: ignore[misc]
    with pytest.raises(TypeError):
        accelerated.summary["state"] = "aborted"  # type: ignore[index]
    # Frozen values can be kept in sets and as keys.
    assert hash(accelerated) == hash(fluoroctl.read_outcome(accelerated.out_dir))


def test_an_unknown_step_names_the_steps_there_are(accelerated):
    with pytest.raises(KeyError, match=r"no step 'film-2min'.*film-1min"):
        accelerated.step("film-2min")


@pytest.mark.parametrize(
    ("faults", "state", "code"),
    [
        (["generator*5@T+55s"], "completed", 3),  # the 1 min film missed
        (["injector.link_lost@0.1s"], "faulted", 1),
    ],
    ids=["missed-film", "faulted"],
)
def test_exit_codes_are_the_clis_and_survive_reading_back(tmp_path, faults, state, code):
    outcome = fluoroctl.run_exam("ivu-accelerated", out=tmp_path / "exam", faults=faults)
    assert (outcome.state, outcome.exit_code) == (state, code)
    assert fluoroctl.read_outcome(tmp_path / "exam").exit_code == code
    assert outcome.faults  # the fault was recorded


def test_models_and_a_patient_path_from_the_working_directory(tmp_path, monkeypatch):
    text = (ROOT / "configs/patients/reduced-function.yaml").read_text()
    (tmp_path / "patients").mkdir()
    (tmp_path / "patients/mine.yaml").write_text(text.replace("id: SIM-", "id: MINE-"))
    monkeypatch.chdir(tmp_path)
    outcome = fluoroctl.run_exam(
        fluoroctl.load_protocol("ivu-accelerated"),
        room=fluoroctl.load_room("simulator"),
        patient="patients/mine.yaml",  # relative to the caller, not to the shipped configs
        out="exam",
    )
    assert outcome.state == "completed", outcome.reason
    assert outcome.patient_id.startswith("MINE-")
    assert outcome.protocol == "<protocol IVU accelerated 1-4-7 min>"
    assert outcome.out_dir == tmp_path / "exam"


def test_shipped_names_and_paths_load_the_same_files():
    by_path = fluoroctl.load_protocol(ROOT / "configs/protocols/ivu-standard.yaml")
    assert fluoroctl.load_protocol("ivu-standard") == by_path
    assert (
        fluoroctl.load_room("simulator")
        == fluoroctl.load_room()
        == fluoroctl.load_room(str(ROOT / "configs/rooms/simulator.yaml"))
    )


def test_an_unknown_name_is_one_line_listing_the_shipped_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        fluoroctl.run_exam("ivu-standrad", out=tmp_path / "exam")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ivu-standrad: no shipped protocol named 'ivu-standrad'")
    assert "ivu-standard" in message
    assert not (tmp_path / "exam").exists()


def test_a_patient_model_is_refused_with_the_reason(tmp_path):
    from hardware_sim.scenario import load_scenario

    scenario = load_scenario(ROOT / "configs/patients/normal.yaml")
    with pytest.raises(TypeError, match="resume"):
        fluoroctl.run_exam("ivu-accelerated", out=tmp_path / "exam", patient=scenario)  # type: ignore[arg-type]
    assert not (tmp_path / "exam").exists()


def test_bad_input_is_refused_before_anything_is_created(tmp_path):
    protocol = tmp_path / "p.yaml"
    protocol.write_text(
        (ROOT / "configs/protocols/ivu-accelerated.yaml")
        .read_text()
        .replace("volume_ml: 40", "volume_ml: 400")
    )
    with pytest.raises(ConfigError) as info:
        fluoroctl.run_exam(protocol, out=tmp_path / "exam")
    assert str(info.value).startswith(f"{protocol}:")
    assert "volume" in str(info.value)
    assert not (tmp_path / "exam").exists()


# -- validate --------------------------------------------------------------------------------
LATE = """\
protocol:
  name: preflight
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 72, mas: 32}
  steps:
    - id: scout
      type: capture
    - id: inject
      type: inject
      phases:
        - {flow_ml_s: 2, volume_ml: 20}
        - {flow_ml_s: 3, volume_ml: 30}
      pressure_limit_psi: 300
    - id: film
      type: capture
      at: 0s
      view: {field: kidneys}
"""


@pytest.mark.parametrize(
    "shipped",
    [
        "configs/protocols/ivu-standard.yaml",
        "configs/rooms/simulator.yaml",
        "configs/rooms/sim-links.yaml",
        "configs/patients/left-obstruction.yaml",
    ],
)
def test_shipped_files_validate_clean(shipped):
    assert fluoroctl.validate(ROOT / shipped) == []


def test_validate_returns_warnings_with_file_line_and_field(tmp_path):
    path = tmp_path / "late.yaml"
    path.write_text(LATE)
    (finding,) = fluoroctl.validate(path)
    assert (finding.severity, finding.path, finding.line) == ("warning", path, 16)
    assert finding.field == "protocol.steps[2].at"
    assert str(finding).startswith(f"warning: {path}:16: protocol.steps[2].at: due 0 s")


def test_validate_returns_every_error_not_only_the_first(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        LATE.replace("flow_ml_s: 3,", "flow_ml_s: 6,").replace(
            "{kv: 72, mas: 32}", "{kv: 72, mas: 1000, ma: 100}"
        )
    )
    found = fluoroctl.validate(path)
    assert [(f.severity, f.line, f.field) for f in found] == [
        ("error", 4, "protocol.technique.mas"),  # a 10 s exposure
        ("error", 12, "protocol.steps[1].phases[1].flow_ml_s"),  # beyond the room
        ("warning", 16, "protocol.steps[2].at"),
    ]
    assert all(f.path == path for f in found)


def test_validate_reports_schema_errors_and_foreign_files_as_findings(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(LATE.replace("pressure_limit_psi", "presure_limit_psi"))
    (finding,) = fluoroctl.validate(typo)
    assert (finding.severity, finding.line) == ("error", 13)
    assert "presure_limit_psi" in finding.field + finding.message
    other = tmp_path / "other.yaml"
    other.write_text("hello: world\n")
    (finding,) = fluoroctl.validate(other)
    assert finding.severity == "error" and "not a fluoroctl file" in finding.message


def test_validate_against_a_narrower_room(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(LATE.replace("at: 0s\n      view: {field: kidneys}", "at: 5min"))
    assert fluoroctl.validate(path) == []
    room = fluoroctl.load_room("simulator")
    narrow = room.model_copy(
        update={"limits": room.limits.model_copy(update={"max_flow_ml_s": 2.5})}
    )
    (finding,) = fluoroctl.validate(path, room=narrow)
    assert finding.severity == "error" and finding.field.endswith("flow_ml_s")


def test_validate_with_a_room_that_cannot_load_raises(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(LATE)
    with pytest.raises(ConfigError):
        fluoroctl.validate(path, room=tmp_path / "missing-room.yaml")


def test_shipped_names_are_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "configs/protocols/ivu-standard.yaml", tmp_path / "mine.yaml")
    assert fluoroctl.load_protocol("mine.yaml") == fluoroctl.load_protocol("ivu-standard")
    assert fluoroctl.load_room().clock == "virtual"  # the built-in simulator


def test_an_order_names_the_exam_through_the_api(tmp_path) -> None:
    import pydicom

    order = tmp_path / "order.yaml"
    order.write_text(
        "order:\n  patient_id: MRN-9\n  patient_name: Roe^Rita\n  accession_number: A-9\n"
        "  referring_physician: Who^Dr\n"
    )
    o = fluoroctl.run_exam("ivu-accelerated", out=tmp_path / "exam", order=order)
    assert o.state.value == "completed" and o.patient_id == "MRN-9"
    for path in o.images:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (str(ds.PatientName), ds.AccessionNumber) == ("Roe^Rita", "A-9")
        assert ds.RequestAttributesSequence[0].AccessionNumber == "A-9"
