"""Hazard: a protocol the room or the drivers will refuse is found out only mid-exam.

The injector's limits were checked at arm time and the drivers' value ranges when a command
was built: both after the scout film had X-rayed the patient. Preflight checks all of it
before the first exposure, in ``validate``, ``plan`` and ``run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scheduler.cli_run as cli_run
import scheduler.compose as compose
from drivers import DeviceError
from drivers.config import ConfigError
from scheduler.cli import main
from scheduler.policy import DoseLimits
from scheduler.preflight import Finding, preflight, raise_on_errors
from scheduler.protocol import PhaseSpec, load_protocol
from scheduler.room import InjectorLimits, load_room
from scheduler.run_inputs import check_out_dir, check_room

from ..conftest import ROOT

BASE = """\
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
      at: 5min
"""
FLOW_LINE = 12  # the second phase
# the film needs the table moved to the kidneys after the confirmed start: it will be late
LATE = BASE.replace("at: 5min", "at: 0s\n      view: {field: kidneys}")


@pytest.fixture
def room():
    return load_room(ROOT / "configs/rooms/simulator.yaml")


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


# -- the room's injector limits -------------------------------------------------------------
def test_flow_above_the_room_limit_points_at_the_fastest_phase(tmp_path, room):
    path = write(tmp_path, BASE.replace("flow_ml_s: 3,", "flow_ml_s: 6,"))
    found = errors(preflight(load_protocol(path), room))
    assert [f.field for f in found] == ["protocol.steps[1].phases[1].flow_ml_s"]
    assert "room limit 5 mL/s" in found[0].message
    with pytest.raises(ConfigError) as info:
        raise_on_errors(found, path)
    assert (info.value.path, info.value.line) == (str(path), FLOW_LINE)
    assert info.value.field == "protocol.steps[1].phases[1].flow_ml_s"


def test_volume_above_the_room_limit(tmp_path, room):
    path = write(tmp_path, BASE.replace("volume_ml: 30", "volume_ml: 140"))
    found = errors(preflight(load_protocol(path), room))
    assert [f.field for f in found] == ["protocol.steps[1].phases"]
    assert "160 mL exceeds the room limit 150 mL" in found[0].message


def test_pressure_above_the_room_limit(tmp_path, room):
    path = write(tmp_path, BASE.replace("pressure_limit_psi: 300", "pressure_limit_psi: 400"))
    found = errors(preflight(load_protocol(path), room))
    assert [f.field for f in found] == ["protocol.steps[1].pressure_limit_psi"]


def test_a_wider_room_accepts_it(tmp_path, room):
    path = write(tmp_path, BASE.replace("flow_ml_s: 3,", "flow_ml_s: 6,"))
    wide = room.model_copy(update={"limits": InjectorLimits(max_flow_ml_s=8)})
    assert preflight(load_protocol(path), wide) == []


# -- the drivers' accepted ranges ------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("flow_ml_s: 3,", "flow_ml_s: 0.05,", "protocol.steps[1].phases[1].flow_ml_s"),
        ("volume_ml: 30", "volume_ml: 0.2", "protocol.steps[1].phases[1].volume_ml"),
        (
            "pressure_limit_psi: 300",
            "pressure_limit_kpa: 50",
            "protocol.steps[1].pressure_limit_kpa",
        ),
        (
            "pressure_limit_psi: 300",
            "pressure_limit_psi: 5",
            "protocol.steps[1].pressure_limit_psi",
        ),
    ],
)
def test_protocol_ranges_match_the_injector_driver(tmp_path, old, new, field):
    """Values the driver refuses are refused by the protocol model itself (and its schema)."""
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, BASE.replace(old, new)))
    assert info.value.field == field


def test_schema_tells_editors_the_driver_minimum(root):
    schema = json.loads((root / "docs/protocol-schema.json").read_text())
    phase = schema["$defs"]["PhaseSpec"]["properties"]
    assert phase["flow_ml_s"]["minimum"] == 0.1
    assert phase["volume_ml"]["minimum"] == 0.5


def test_driver_range_check_backs_up_the_model(tmp_path, room):
    """Preflight builds the driver's own value objects, so a value that got past the model
    (here: built without validation) is still caught on its field."""
    protocol = load_protocol(write(tmp_path, BASE))
    inject = protocol.steps[1]
    bad = PhaseSpec.model_construct(flow_ml_s=0.05, volume_ml=30.0, delay_s=0.0)
    phases = [inject.phases[0], bad]  # type: ignore[union-attr]
    steps = list(protocol.steps)
    steps[1] = inject.model_copy(update={"phases": phases})
    protocol = protocol.model_copy(update={"steps": steps})
    found = errors(preflight(protocol, room))
    assert [f.field for f in found] == ["protocol.steps[1].phases[1].flow_ml_s"]
    assert "flow_ml_s=0.05 outside [0.1, 30.0]" in found[0].message


@pytest.mark.parametrize(
    ("technique", "ms"),
    [("{kv: 72, mas: 1000, ma: 100}", "10000"), ("{kv: 72, mas: 0.05, ma: 500}", "0.1")],
)
def test_exposure_time_outside_the_generator_range(tmp_path, room, technique, ms):
    path = write(tmp_path, BASE.replace("{kv: 72, mas: 32}", technique))
    found = errors(preflight(load_protocol(path), room))
    assert [f.field for f in found] == ["protocol.technique.mas"]
    assert f"{ms} ms exposure" in found[0].message
    with pytest.raises(ConfigError) as info:
        raise_on_errors(found, path)
    assert info.value.line == 4


def test_step_technique_is_named_on_the_step(tmp_path, room):
    text = BASE.replace(
        "      at: 5min\n", "      at: 5min\n      technique: {kv: 72, mas: 900, ma: 100}\n"
    )
    found = errors(preflight(load_protocol(write(tmp_path, text)), room))
    assert [f.field for f in found] == ["protocol.steps[2].technique.mas"]


# -- dose ------------------------------------------------------------------------------------
@pytest.fixture
def obstruction(root):
    return load_protocol(root / "configs/protocols/ivu-obstruction.yaml")


def fluoro_index(protocol) -> int:
    return next(i for i, s in enumerate(protocol.steps) if s.type == "fluoro")


def test_fluoro_time_beyond_the_room_limit(room, obstruction):
    tight = room.model_copy(update={"dose": DoseLimits(max_fluoro_time_s=0.01)})
    found = errors(preflight(obstruction, tight))
    i = fluoro_index(obstruction)
    assert [f.field for f in found] == [f"protocol.steps[{i}].duration_s"]
    assert "cumulative fluoroscopy time" in found[0].message


def test_fluoro_rate_beyond_the_room_limit(room, obstruction):
    tight = room.model_copy(update={"dose": DoseLimits(max_air_kerma_rate_mgy_min=0.5)})
    found = errors(preflight(obstruction, tight))
    i = fluoro_index(obstruction)
    assert [f.field for f in found] == [f"protocol.steps[{i}].technique"]
    assert "air-kerma rate" in found[0].message


def test_estimated_air_kerma_beyond_the_stop_level_is_a_warning(room, obstruction):
    capped = room.model_copy(update={"dose": DoseLimits(max_reference_air_kerma_mgy=5.0)})
    found = preflight(obstruction, capped)
    assert errors(found) == []
    assert len(found) == 1 and found[0].severity == "warning"
    assert "stop level 5 mGy" in found[0].message


# -- the room's links ------------------------------------------------------------------------
def room_with(tmp_path: Path, carm: str, name: str = "room.yaml") -> Path:
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    text = text.replace("    carm: sim://carm", f"    carm: {carm}")
    if not carm.startswith("sim://"):
        text = text.replace("  clock: virtual", "  clock: real")
    return write(tmp_path, text, name)


def test_unknown_link_scheme(tmp_path):
    room = load_room(room_with(tmp_path, "foo://carm"))
    found = check_room(room)
    assert [f.field for f in found] == ["room.devices.carm"]
    assert "unknown link scheme 'foo'" in found[0].message


def test_a_room_may_mix_backends_per_device(tmp_path):
    """A mock C-arm beside simulated table and injector: each role opens with its backend."""
    assert check_room(load_room(room_with(tmp_path, "mock://carm"))) == []


def test_malformed_wire_url(tmp_path):
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    for role in ("carm", "table", "injector"):
        text = text.replace(f"    {role}: sim://{role}", f"    {role}: tcp://127.0.0.1:7001")
    text = text.replace("    carm: tcp://127.0.0.1:7001", "    carm: tcp://127.0.0.1")
    text = text.replace("  clock: virtual", "  clock: real\n  key_file: room.key")
    found = check_room(load_room(write(tmp_path, text, "r.yaml")))
    assert [f.field for f in found] == ["room.devices.carm"]
    assert "no port" in found[0].message


def test_wire_links_without_a_room_key_are_refused_at_load(tmp_path):
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    text = text.replace("    injector: sim://injector", "    injector: tcp://127.0.0.1:7001")
    text = text.replace("  clock: virtual", "  clock: real")
    with pytest.raises(ConfigError) as err:
        load_room(write(tmp_path, text, "r.yaml"))
    assert "devices.injector" in str(err.value) and "key_file" in str(err.value)
    assert "fluoroctl keys new" in str(err.value)


def test_shipped_rooms_are_servable(root):
    for path in sorted((root / "configs/rooms").glob("*.yaml")):
        assert check_room(load_room(path)) == [], path


# -- the CLI: validate, plan, run ------------------------------------------------------------
@pytest.fixture
def no_devices(monkeypatch):
    """Record any attempt to open devices or create the event loop."""
    calls: list[str] = []

    async def open_devices(*args, **kwargs):
        calls.append("open_devices")
        raise DeviceError("test", "open", "devices must not be opened")

    def loop(*args, **kwargs):
        calls.append("event_loop")
        raise AssertionError("the event loop must not be created")

    monkeypatch.setattr(compose, "open_devices", open_devices)
    monkeypatch.setattr(cli_run, "new_event_loop", loop)
    return calls


def stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_validate_checks_a_protocol_against_the_default_room(tmp_path, capsys):
    path = write(tmp_path, BASE.replace("flow_ml_s: 3,", "flow_ml_s: 6,"))
    assert main(["validate", str(path)]) == 2
    assert stderr_lines(capsys) == [
        f"error: {path}:{FLOW_LINE}: protocol.steps[1].phases[1].flow_ml_s: flow 6 mL/s "
        "exceeds the room limit 5 mL/s for 18 G antecubital IV (the room's injector limits)"
    ]


def test_validate_room_option(tmp_path, capsys):
    path = write(tmp_path, BASE.replace("flow_ml_s: 3,", "flow_ml_s: 6,"))
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    wide = write(tmp_path, text.replace("max_flow_ml_s: 5.0", "max_flow_ml_s: 8"), "wide.yaml")
    assert main(["validate", str(path), "--room", str(wide)]) == 0
    assert capsys.readouterr().out == f"{path}: ok (protocol)\n"


def test_validate_with_a_bad_room_is_one_line(tmp_path, capsys):
    path = write(tmp_path, BASE)
    bad = write(tmp_path, "room: {name: x}\n", "bad-room.yaml")
    assert main(["validate", str(path), str(path), "--room", str(bad)]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:1: room.devices")


def test_validate_prints_warnings_and_passes(tmp_path, capsys):
    path = write(tmp_path, LATE)
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{path}: ok (protocol)\n"
    warnings = captured.err.splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: {path}:16: protocol.steps[2].at: due 0 s")


def test_validate_checks_room_links(tmp_path, capsys):
    path = room_with(tmp_path, "foo://carm")
    assert main(["validate", str(path)]) == 2
    (line,) = stderr_lines(capsys)
    assert line.startswith(f"error: {path}:") and "room.devices.carm: unknown link scheme" in line


def test_plan_refuses_errors(tmp_path, capsys):
    path = write(tmp_path, BASE.replace("volume_ml: 30", "volume_ml: 140"))
    assert main(["plan", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = [x for x in captured.err.splitlines() if x.strip()]
    assert line.startswith(f"error: {path}:10: protocol.steps[1].phases:")


def test_plan_prints_warnings(tmp_path, capsys):
    path = write(tmp_path, LATE)
    assert main(["plan", str(path)]) == 0
    captured = capsys.readouterr()
    assert "Plan: preflight" in captured.out
    assert captured.err.startswith(f"warning: {path}:16: protocol.steps[2].at:")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("flow_ml_s: 3,", "flow_ml_s: 6,"),  # beyond the room: refused at arm time before
        ("flow_ml_s: 3,", "flow_ml_s: 0.05,"),  # beyond the driver: failed after the scout
        ("{kv: 72, mas: 32}", "{kv: 72, mas: 1000, ma: 100}"),  # 10 s exposure
    ],
    ids=["room-flow", "driver-flow", "exposure-time"],
)
def test_run_refuses_before_the_scout(tmp_path, capsys, no_devices, old, new):
    path = write(tmp_path, BASE.replace(old, new))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:")
    assert not out.exists()
    assert no_devices == []


def test_run_prints_warnings_and_goes_on(tmp_path, capsys):
    path = write(tmp_path, LATE)
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {path}:16: protocol.steps[2].at:")
    assert (out / "summary.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    film = next(s for s in summary["steps"] if s["id"] == "film")
    assert film["status"] == "missed"  # as the warning said
    assert code != 2


# -- run's other inputs ----------------------------------------------------------------------
def test_unknown_patient_lists_the_known_ones(tmp_path, capsys, no_devices):
    out = tmp_path / "out"
    code = main(["run", str(write(tmp_path, BASE)), "--patient", "nobody", "--out", str(out)])
    assert code == 2
    known = ", ".join(sorted(p.stem for p in (ROOT / "configs" / "patients").glob("*.yaml")))
    assert "normal" in known and "left-obstruction" in known
    assert stderr_lines(capsys) == [
        f"error: --patient: unknown patient scenario 'nobody' (known: {known}; "
        "or give a path to a .yaml file)"
    ]
    assert not out.exists() and no_devices == []


def test_bad_patient_file_names_its_line(tmp_path, capsys, no_devices):
    patient = write(tmp_path, "patient:\n  id: X\n  name: A^B\n  hydration: 9\n", "pat.yaml")
    out = tmp_path / "out"
    code = main(["run", str(write(tmp_path, BASE)), "--patient", str(patient), "--out", str(out)])
    assert code == 2
    (line,) = stderr_lines(capsys)
    assert line.startswith(f"error: {patient}:4: patient.hydration:")
    assert not out.exists() and no_devices == []


def test_room_option_patient_is_checked(tmp_path, capsys, no_devices):
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    room = write(tmp_path, text.replace("patient: normal", "patient: nobody"), "room.yaml")
    out = tmp_path / "out"
    code = main(["run", str(write(tmp_path, BASE)), "--room", str(room), "--out", str(out)])
    assert code == 2
    (line,) = stderr_lines(capsys)
    line_no = (
        text.splitlines().index(
            "    patient: normal             # configs/patients/<name>.yaml, or a path"
        )
        + 1
    )
    assert line.startswith(f"error: {room}:{line_no}: room.options.patient: unknown patient")


def test_patient_names_resolve_as_the_simulator_resolves_them(tmp_path):
    from hardware_sim.scenario import resolve_scenario_path

    base = ROOT
    for name in (
        "normal",
        "configs/patients/normal.yaml",
        str(ROOT / "configs/patients/normal.yaml"),
    ):
        resolved = resolve_scenario_path(name, base)
        assert resolved.is_file(), name  # the preflight check passes for exactly these
    from scheduler.run_inputs import check_patient

    sim_room = load_room(ROOT / "configs/rooms/simulator.yaml")
    for name in (
        "normal",
        "configs/patients/normal.yaml",
        str(ROOT / "configs/patients/normal.yaml"),
    ):
        check_patient(name, sim_room, ROOT / "configs/rooms/simulator.yaml")


def test_out_is_an_existing_file(tmp_path):
    out = write(tmp_path, "x", "out")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        check_out_dir(out)


def test_out_under_a_file(tmp_path):
    parent = write(tmp_path, "x", "file")
    with pytest.raises(ConfigError, match="is not a directory"):
        check_out_dir(parent / "a" / "b")
    assert not (tmp_path / "a").exists()


def test_out_parent_not_writable():
    # /proc/self refuses new entries even for root; a real unwritable parent
    out = Path("/proc/self/fluoroctl-out")
    assert not os.access("/proc/self", os.W_OK)
    with pytest.raises(ConfigError, match="not writable"):
        check_out_dir(out)


def test_out_that_can_be_created_is_not_created(tmp_path):
    out = tmp_path / "new" / "exam"
    check_out_dir(out)
    assert not (tmp_path / "new").exists()


def test_run_with_an_unusable_out_is_one_line(tmp_path, capsys, no_devices):
    out = write(tmp_path, "x", "out")
    assert main(["run", str(write(tmp_path, BASE)), "--out", str(out)]) == 2
    assert stderr_lines(capsys) == [f"error: --out: {out} exists and is not a directory"]
    assert no_devices == []


def test_missing_optional_dependency_is_named(tmp_path):
    """A room on MQTT with aiomqtt not importable: one line saying what to install."""
    code = (
        "import sys; sys.modules['aiomqtt'] = None\n"
        "from scheduler.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "run",
            "configs/protocols/ivu-accelerated.yaml",
            "--room",
            "configs/rooms/sim-links.yaml",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "install aiomqtt" in lines[0]
    assert lines[0].startswith("error: configs/rooms/sim-links.yaml:")
    assert "Traceback" not in proc.stderr
    assert not out.exists()
