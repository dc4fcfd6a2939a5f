"""Malformed files get one clear message naming file, line and field; good files load."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drivers.config import ConfigError
from scheduler.protocol import InjectStep, load_protocol, parse_duration
from scheduler.room import load_room

GOOD = textwrap.dedent(
    """\
    protocol:
      name: test
      contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
      technique: {kv: 72, mas: 32}
      steps:
        - id: scout
          type: capture
        - id: inject
          type: inject
          phases: [{flow_ml_s: 2, volume_ml: 50}]
          pressure_limit_psi: 300
        - id: film
          type: capture
          at: 5min
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, text))
    return info.value


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("12s", 12), ("5min", 300), ("1h30min", 5400), ("2min30s", 150), (90, 90), ("0.5s", 0.5)],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "", "min", "-3s", True, "1d"])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_good_protocol_loads(tmp_path):
    p = load_protocol(write(tmp_path, GOOD))
    assert [s.id for s in p.steps] == ["scout", "inject", "film"]
    assert p.steps[2].at == 300
    inject = p.inject_step
    assert isinstance(inject, InjectStep)
    assert inject.limit_kpa == pytest.approx(2068.4, abs=0.1)


def test_bad_duration_names_line_and_field(tmp_path):
    err = error_for(tmp_path, GOOD.replace("at: 5min", "at: 5 minutes"))
    assert err.line == 14
    assert err.field == "protocol.steps[2].at"
    assert "invalid duration" in err.message
    assert str(err).startswith(f"{tmp_path / 'p.yaml'}:14: protocol.steps[2].at:")


def test_unknown_field_is_named(tmp_path):
    err = error_for(
        tmp_path, GOOD.replace("technique: {kv: 72, mas: 32}", "technique: {kv: 72, mAs: 32}")
    )
    assert err.line == 4
    assert err.field in ("protocol.technique.mAs", "protocol.technique.mas")


def test_kv_out_of_range(tmp_path):
    err = error_for(tmp_path, GOOD.replace("kv: 72", "kv: 300"))
    assert (err.line, err.field) == (4, "protocol.technique.kv")
    assert "150" in err.message


def test_timed_step_before_injection_points_at_its_at(tmp_path):
    text = GOOD.replace(
        "    - id: scout\n      type: capture\n",
        "    - id: scout\n      type: capture\n      at: 10s\n",
    )
    err = error_for(tmp_path, text)
    assert (err.line, err.field) == (8, "protocol.steps[0].at")
    assert "no injection step" in err.message


def test_timed_steps_out_of_order(tmp_path):
    text = GOOD + "    - id: early\n      type: capture\n      at: 1min\n"
    err = error_for(tmp_path, text)
    assert err.field == "protocol.steps[3].at"
    assert err.line == 17
    assert "earlier" in err.message


def test_duplicate_step_id(tmp_path):
    err = error_for(tmp_path, GOOD.replace("id: film", "id: scout"))
    assert (err.line, err.field) == (12, "protocol.steps[2].id")


def test_unknown_step_type(tmp_path):
    err = error_for(tmp_path, GOOD.replace("type: inject", "type: injekt"))
    assert (err.line, err.field) == (9, "protocol.steps[1].type")
    assert "'injekt'" in err.message


def test_both_pressure_limits(tmp_path):
    err = error_for(
        tmp_path,
        GOOD.replace(
            "pressure_limit_psi: 300", "pressure_limit_psi: 300\n      pressure_limit_kpa: 2000"
        ),
    )
    assert "exactly one" in err.message
    assert err.field == "protocol.steps[1]"


def test_yaml_syntax_error_has_line(tmp_path):
    err = error_for(tmp_path, GOOD.replace("name: test", "name: [test"))
    assert err.line is not None and err.line >= 2
    assert "YAML syntax" in err.message


def test_missing_root_key(tmp_path):
    err = error_for(tmp_path, "steps: []\n")
    assert err.field == "protocol"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_protocol(tmp_path / "nope.yaml")


def test_shipped_configs_load(root):
    for path in sorted((root / "configs" / "protocols").glob("*.yaml")):
        assert load_protocol(path).steps
    for path in sorted((root / "configs" / "rooms").glob("*.yaml")):
        assert load_room(path).devices


def test_cli_validate_bad_file_exit_2_without_traceback(tmp_path, root):
    bad = write(tmp_path, GOOD.replace("at: 5min", "at: soon"))
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {bad}:14: protocol.steps[2].at: invalid duration 'soon' (use e.g. 12s, 5min, 1h30min)"
    ]


def test_cli_validate_good_files(root):
    files = sorted(str(p) for p in (root / "configs").glob("*/*.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "validate", *files],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(files)
    assert "ok (patient)" in proc.stdout


def test_cli_validate_bad_patient(tmp_path, root):
    bad = tmp_path / "pat.yaml"
    bad.write_text("patient:\n  id: X\n  name: A^B\n  build: {weight_kg: -3}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert proc.returncode == 2
    assert f"{bad}:4: patient.build.weight_kg:" in proc.stderr
