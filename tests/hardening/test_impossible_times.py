"""Hazard: impossible numbers and time points in a protocol, room or patient file.

``at: .inf``, ``.nan``, ``1e300``, ``100000h`` or a negative time must be refused naming
file, line and field (NaN used to pass ``NaN < 0``; infinity passed every lower bound), every
float field must be finite, and a protocol whose films cannot all be taken is refused
(two acquisitions at one time point) or warned about with the reason (a film due before its
view can be prepared).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from drivers.config import ConfigError
from hardware_sim.scenario import load_scenario
from scheduler.preflight import preflight
from scheduler.protocol import MAX_DURATION_S, load_protocol, parse_duration
from scheduler.room import load_room

PROTOCOL = """\
protocol:
  name: times
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 72, mas: 32}
  steps:
    - id: scout
      type: capture
    - id: inject
      type: inject
      phases: [{flow_ml_s: 2, volume_ml: 50}]
      pressure_limit_psi: 300
    - id: film-5
      type: capture
      at: 5min
      view: {field: kidneys}
    - id: film-15
      type: capture
      at: 15min
"""
LAST_AT_LINE = 18  # "at: 15min" of the last timed step: nothing after it checks its order


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def protocol_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, text))
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 1e300, MAX_DURATION_S + 1, "100000h", "25h", "24h1s"],
    ids=["nan", "inf", "-inf", "1e300", "over-24h-number", "100000h", "25h", "24h1s"],
)
def test_parse_duration_refuses_impossible_values(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_the_maximum_is_24_hours():
    assert MAX_DURATION_S == 24 * 3600
    assert parse_duration("24h") == MAX_DURATION_S
    assert parse_duration(MAX_DURATION_S) == MAX_DURATION_S


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (".inf", "finite"),
        (".nan", "finite"),
        ("-.inf", "finite"),
        ("1.0e+300", "24 h"),
        ("1e300", "invalid duration"),
        ("100000h", "24 h"),
        ("-5s", "invalid duration"),
        ("-1", "negative"),
    ],
)
def test_impossible_at_names_file_line_and_field(tmp_path, value, needle):
    err = protocol_error(tmp_path, PROTOCOL.replace("at: 15min", f"at: {value}"))
    assert (err.line, err.field) == (LAST_AT_LINE, "protocol.steps[3].at")
    assert needle in err.message


def test_nan_tolerance_says_finite(tmp_path):
    text = PROTOCOL.replace("      at: 15min\n", "      at: 15min\n      tolerance_s: .nan\n")
    err = protocol_error(tmp_path, text)
    assert (err.line, err.field) == (19, "protocol.steps[3].tolerance_s")
    assert "finite" in err.message


def test_infinite_technique(tmp_path):
    err = protocol_error(tmp_path, PROTOCOL.replace("mas: 32", "mas: .inf"))
    assert (err.line, err.field) == (4, "protocol.technique.mas")
    assert "finite" in err.message


def test_two_acquisitions_at_one_time_point(tmp_path):
    text = PROTOCOL.replace("at: 15min", "at: 300s")
    err = protocol_error(tmp_path, text)
    assert (err.line, err.field) == (LAST_AT_LINE, "protocol.steps[3].at")
    assert "film-5" in err.message and "one time point" in err.message


def test_fluoro_and_capture_at_one_time_point(tmp_path):
    text = PROTOCOL + (
        "    - id: look\n      type: fluoro\n      at: 15min\n      pulse_rate_hz: 3\n"
        "      duration_s: 4\n      technique: {kv: 80, ma: 10}\n"
    )
    err = protocol_error(tmp_path, text)
    assert err.field == "protocol.steps[4].at"
    assert "film-15" in err.message


def test_a_prompt_may_share_a_time_point(tmp_path):
    text = PROTOCOL + ("    - id: note\n      type: prompt\n      at: 15min\n      message: done\n")
    assert load_protocol(write(tmp_path, text)).steps[4].at == 900


def test_room_infinite_dose_limit(tmp_path, root):
    text = (root / "configs/rooms/simulator.yaml").read_text()
    text = text.replace("  operator:\n", "  dose: {max_fluoro_time_s: .inf}\n  operator:\n")
    with pytest.raises(ConfigError) as info:
        load_room(write(tmp_path, text))
    assert info.value.field == "room.dose.max_fluoro_time_s"
    assert "finite" in info.value.message


@pytest.mark.parametrize("value", [".nan", "-5", ".inf", "100000"])
def test_room_operator_delay(tmp_path, root, value):
    text = (root / "configs/rooms/simulator.yaml").read_text()
    text = text.replace(
        "    mode: scripted\n", f"    mode: scripted\n    delays_s: {{void: {value}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_room(write(tmp_path, text))
    assert info.value.field == "room.operator.delays_s.void"
    line = text.splitlines().index(f"    delays_s: {{void: {value}}}") + 1
    assert info.value.line == line


def test_room_option_nan(tmp_path, root):
    text = (root / "configs/rooms/simulator.yaml").read_text()
    text = text.replace("    patient: normal", "    patient: normal\n    gain: .nan")
    with pytest.raises(ConfigError) as info:
        load_room(write(tmp_path, text))
    assert info.value.field.startswith("room.options.gain")


def test_patient_nan(tmp_path, root):
    text = (root / "configs/patients/normal.yaml").read_text()
    text = text.replace("hydration: 1.0", "hydration: .nan")
    with pytest.raises(ConfigError) as info:
        load_scenario(write(tmp_path, text))
    assert info.value.field == "patient.hydration"
    assert "finite" in info.value.message


@pytest.fixture
def room(root):
    return load_room(root / "configs/rooms/simulator.yaml")


def warnings_of(protocol, room):
    findings = preflight(protocol, room)
    assert [f for f in findings if f.severity == "error"] == []
    return [f for f in findings if f.severity == "warning"]


def test_film_at_the_injection_start_is_warned_about(tmp_path, room):
    protocol = load_protocol(write(tmp_path, PROTOCOL.replace("at: 5min", "at: 0s")))
    warnings = warnings_of(protocol, room)
    assert [w.field for w in warnings] == ["protocol.steps[2].at"]
    assert "after the injector confirms the start" in warnings[0].message


def test_a_film_at_the_start_in_the_view_already_held_is_not(tmp_path, room):
    # scout and film share the KUB view: nothing moves, only the start confirmation is awaited
    text = PROTOCOL.replace("at: 5min\n      view: {field: kidneys}\n", "at: 0s\n")
    protocol = load_protocol(write(tmp_path, text))
    assert protocol.steps[2].at == 0
    assert warnings_of(protocol, room) == []


def test_a_film_too_close_to_the_one_before_is_warned_about(tmp_path, room):
    text = PROTOCOL.replace("at: 15min", "at: 5min2s")
    warnings = warnings_of(load_protocol(write(tmp_path, text)), room)
    assert [w.field for w in warnings] == ["protocol.steps[3].at"]
    assert "film-5" in warnings[0].message


def test_a_wide_tolerance_covers_the_preparation(tmp_path, room):
    text = PROTOCOL.replace("at: 5min\n", "at: 0s\n      tolerance_s: 30\n")
    assert warnings_of(load_protocol(write(tmp_path, text)), room) == []


@pytest.mark.parametrize("room_file", ["simulator.yaml", "sim-links.yaml"])
def test_shipped_protocols_have_no_errors_or_warnings(root, room_file):
    room = load_room(root / "configs/rooms" / room_file)
    for path in sorted((root / "configs/protocols").glob("*.yaml")):
        assert preflight(load_protocol(path), room) == [], path.name


def test_schema_tells_editors_the_duration_grammar_and_limit(root):
    """Editors validating with docs/protocol-schema.json accept `at: 5min` and flag the rest."""
    import json
    import re

    import yaml

    schema = json.loads((root / "docs/protocol-schema.json").read_text())
    at = schema["$defs"]["CaptureStep"]["properties"]["at"]
    branches = at["anyOf"]
    number = next(b for b in branches if b.get("type") == "number")
    assert (number["minimum"], number["maximum"]) == (0, MAX_DURATION_S)
    pattern = re.compile(next(b for b in branches if b.get("type") == "string")["pattern"])
    shipped = [
        step["at"]
        for path in sorted((root / "configs/protocols").glob("*.yaml"))
        for step in yaml.safe_load(path.read_text())["protocol"]["steps"]
        if isinstance(step.get("at"), str)
    ]
    assert shipped and all(pattern.search(v) for v in shipped)
    for bad in ("soon", "5 minutes", "-5s", "1e300"):
        assert not pattern.search(bad), bad
