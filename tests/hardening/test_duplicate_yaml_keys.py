"""Hazard: a key written twice in a YAML file silently keeps only its last value.

PyYAML's safe loader lets the second ``volume_ml`` win, so an edited protocol can inject a
volume nobody meant. Every file kind (protocol, room, patient) must refuse a duplicate key and
name both lines and the field.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drivers.config import ConfigError, load_yaml
from hardware_sim.scenario import load_scenario
from scheduler.protocol import load_protocol
from scheduler.room import load_room

PROTOCOL = """\
protocol:
  name: dup
  contrast: {agent: Iohexol 300, concentration_mg_ml: 300}
  technique: {kv: 72, mas: 32}
  steps:
    - id: scout
      type: capture
    - id: inject
      type: inject
      phases:
        - flow_ml_s: 2
          volume_ml: 50
          volume_ml: 150
      pressure_limit_psi: 300
    - id: film
      type: capture
      at: 5min
"""


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_volume_in_a_phase_names_both_lines(tmp_path):
    path = write(tmp_path, PROTOCOL)
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    err = info.value
    assert (err.line, err.field) == (13, "protocol.steps[1].phases[0].volume_ml")
    assert err.message == "duplicate key (first at line 12)"
    assert str(err) == (
        f"{path}:13: protocol.steps[1].phases[0].volume_ml: duplicate key (first at line 12)"
    )


def test_duplicate_top_level_key(tmp_path):
    text = PROTOCOL.replace("  name: dup\n", "  name: dup\n  name: other\n")
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, text))
    assert (info.value.line, info.value.field) == (3, "protocol.name")
    assert "first at line 2" in info.value.message


def test_duplicate_in_a_flow_mapping(tmp_path):
    text = PROTOCOL.replace("{kv: 72, mas: 32}", "{kv: 72, mas: 32, kv: 150}")
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, text))
    assert (info.value.line, info.value.field) == (4, "protocol.technique.kv")
    # both on one line: the column tells them apart
    col = text.splitlines()[3].index("kv") + 1
    assert info.value.message == f"duplicate key (first at line 4, column {col})"


def test_quoted_and_plain_spellings_are_the_same_key(tmp_path):
    text = PROTOCOL.replace("          volume_ml: 150", '          "volume_ml": 150')
    with pytest.raises(ConfigError, match="duplicate key"):
        load_protocol(write(tmp_path, text))


def test_duplicate_root_key(tmp_path):
    path = write(tmp_path, PROTOCOL + "protocol:\n  name: second\n")
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert (info.value.line, info.value.field) == (18, "protocol")
    assert "first at line 1" in info.value.message


def test_room_duplicate_limit(tmp_path, root):
    text = (root / "configs/rooms/simulator.yaml").read_text()
    text = text.replace(
        "    max_volume_ml: 150\n", "    max_volume_ml: 150\n    max_volume_ml: 500\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_room(path)
    first = text.splitlines().index("    max_volume_ml: 150") + 1
    assert info.value.field == "room.limits.max_volume_ml"
    assert info.value.line == first + 1
    assert info.value.message == f"duplicate key (first at line {first})"


def test_patient_duplicate_key(tmp_path, root):
    text = (root / "configs/patients/normal.yaml").read_text()
    text = text.replace("  sex: F\n", "  sex: F\n  sex: M\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert info.value.field == "patient.sex"
    assert "duplicate key" in info.value.message


def test_merge_keys_may_override_merged_values(tmp_path):
    # YAML merge (<<) is not a duplicate: an explicit key deliberately overrides a merged one.
    text = PROTOCOL.replace(
        "      phases:\n        - flow_ml_s: 2\n          volume_ml: 50\n          volume_ml: 150\n",
        "      phases:\n        - &base {flow_ml_s: 2, volume_ml: 50}\n"
        "        - <<: *base\n          volume_ml: 20\n",
    )
    protocol = load_protocol(write(tmp_path, text))
    inject = protocol.inject_step
    assert inject is not None
    assert [p.volume_ml for p in inject.phases] == [50, 20]


def test_shipped_files_have_no_duplicates(root):
    for path in sorted((root / "configs").glob("*/*.yaml")):
        load_yaml(path)  # raises on a duplicate key


def test_a_file_is_parsed_once(tmp_path, monkeypatch):
    """One parse gives both the data and the node tree used for line numbers."""
    events: list[str] = []
    real_parse = yaml.parser.Parser.parse_stream_start

    def parse_stream_start(self):
        events.append("stream")
        return real_parse(self)

    monkeypatch.setattr(yaml.parser.Parser, "parse_stream_start", parse_stream_start)
    text = PROTOCOL.replace("          volume_ml: 150\n", "")
    data, node = load_yaml(write(tmp_path, text))
    assert data["protocol"]["name"] == "dup"
    assert node is not None
    assert len(events) == 1, "the text was parsed more than once"
