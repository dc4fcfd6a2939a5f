"""Hazard: a damaged or hostile input file crashes the loader or exhausts the machine.

Deep nesting (RecursionError), alias bombs (billion laughs), huge files, impossible dates
(PyYAML raises a bare ValueError from its timestamp constructor), non-UTF-8 bytes, control
characters, empty files and a list at the top level must each be one ConfigError naming the
file (and the line where one is known), never a traceback or a hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.config import MAX_FILE_BYTES, ConfigError, load_model, load_yaml
from hardware_sim.scenario import load_scenario
from scheduler.protocol import Protocol, load_protocol
from scheduler.room import load_room


def write(tmp_path: Path, data: str | bytes, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def one_line(err: ConfigError) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


def test_file_over_the_size_cap_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = write(tmp_path, "protocol:\n  name: x\n" + "#" * MAX_FILE_BYTES)
    read: list[Path] = []
    real_read_bytes, real_read_text = Path.read_bytes, Path.read_text
    real_open = Path.open

    def spy_bytes(self: Path) -> bytes:
        read.append(self)
        return real_read_bytes(self)

    def spy_text(self: Path, *args: object, **kwargs: object) -> str:
        read.append(self)
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    def spy_open(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        read.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_bytes", spy_bytes)
    monkeypatch.setattr(Path, "read_text", spy_text)
    monkeypatch.setattr(Path, "open", spy_open)
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert path not in read, "an oversized file was opened before being refused"
    assert info.value.path == str(path)
    assert "1 MiB" in info.value.message
    one_line(info.value)


def test_file_just_under_the_cap_is_read(tmp_path):
    body = "protocol:\n  name: x\n"
    path = write(tmp_path, body + "#" * (MAX_FILE_BYTES - len(body) - 1) + "\n")
    data, _ = load_yaml(path)
    assert data == {"protocol": {"name": "x"}}


def test_deep_nesting_beyond_the_recursion_limit(tmp_path):
    depth = 5000
    path = write(tmp_path, "protocol: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert "nested" in info.value.message
    one_line(info.value)


def test_moderately_deep_nesting_is_refused_with_a_line(tmp_path):
    # deep enough to be absurd, shallow enough that PyYAML itself composes it
    lines = ["protocol:"] + [f"{'  ' * (i + 1)}k{i}:" for i in range(120)]
    path = write(tmp_path, "\n".join(lines) + " 1\n")
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert "nested" in info.value.message
    assert info.value.line is not None
    one_line(info.value)


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    lines.append("protocol: {name: *a9}")
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert "alias" in info.value.message
    assert info.value.line is not None
    one_line(info.value)


def test_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, "protocol: &p\n  name: x\n  self: *p\n")
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert "recursive" in info.value.message
    one_line(info.value)


def test_small_aliases_are_fine(tmp_path):
    text = (
        "protocol:\n  name: a\n  technique: &t {kv: 72, mas: 32}\n  steps:\n"
        "    - {id: s, type: capture, technique: *t}\n"
    )
    protocol = load_protocol(write(tmp_path, text))
    assert protocol.steps[0].technique == protocol.technique  # type: ignore[union-attr]


@pytest.mark.parametrize("date", ["2026-13-45", "2026-02-30", "2026-00-01"])
def test_impossible_birth_date_names_its_line(tmp_path, root, date):
    text = (root / "configs/patients/normal.yaml").read_text()
    text = text.replace("birth_date: 1971-05-14", f"birth_date: {date}")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    line = text.splitlines().index(f"  birth_date: {date}") + 1
    assert (info.value.line, info.value.field) == (line, "patient.birth_date")
    assert date in info.value.message
    one_line(info.value)


def test_impossible_timestamp_in_a_protocol(tmp_path):
    text = "protocol:\n  name: x\n  description: 2026-13-45 12:00:00\n"
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, text))
    assert info.value.line == 3


def test_non_utf8_names_the_line(tmp_path):
    data = b"protocol:\n  name: x\n  description: caf" + b"\xe9\n"
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, data))
    assert info.value.line == 3
    assert "UTF-8" in info.value.message
    one_line(info.value)


def test_binary_garbage(tmp_path):
    data = bytes(range(256)) * 8
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, data))
    one_line(info.value)


def test_control_character_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, "protocol:\n  name: a\x07b\n"))
    assert info.value.line == 2
    one_line(info.value)


def test_empty_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_room(write(tmp_path, ""))
    assert "empty" in info.value.message
    one_line(info.value)


def test_list_at_top_level(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, "- protocol: {name: x}\n"))
    assert "list" in info.value.message
    assert info.value.line == 1


def test_two_documents(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, "protocol: {name: x}\n---\nprotocol: {name: y}\n"))
    assert info.value.line == 2  # the second document's "---"
    assert "single document" in info.value.message
    one_line(info.value)


def test_directory_instead_of_a_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path, Protocol, root_key="protocol")
    assert "not a regular file" in info.value.message


def test_python_tags_are_not_executed(tmp_path):
    text = "protocol: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ConfigError) as info:
        load_protocol(write(tmp_path, text))
    assert info.value.line == 1
    one_line(info.value)
