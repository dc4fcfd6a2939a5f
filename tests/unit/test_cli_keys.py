"""``fluoroctl keys new|show``: the room secret, created private, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.wire.keys import load_key_file
from scheduler.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _room(tmp_path: Path, key_line: str = "") -> Path:
    text = (ROOT / "configs/rooms/simulator.yaml").read_text()
    if key_line:
        text = text.replace("  clock: virtual", f"  clock: virtual\n{key_line}")
    path = tmp_path / "room1.yaml"
    path.write_text(text)
    return path


def test_new_key_beside_a_room_that_names_none(tmp_path: Path, capsys) -> None:
    room = _room(tmp_path)
    assert main(["keys", "new", str(room)]) == 0
    out = capsys.readouterr().out
    key = load_key_file(tmp_path / "room1.key")
    assert (tmp_path / "room1.key").stat().st_mode & 0o777 == 0o600
    assert key.fingerprint in out and "key_file:" in out
    assert key.secret.hex() not in out
    assert main(["keys", "show", str(room)]) == 0
    assert key.fingerprint in capsys.readouterr().out


def test_new_key_where_the_room_says_and_never_over_an_old_one(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    room = _room(tmp_path, "  key_file: secrets/room1.key")
    assert main(["keys", "new", str(room)]) == 0
    first = load_key_file(tmp_path / "secrets/room1.key")
    capsys.readouterr()
    assert main(["keys", "new", str(room)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already there" in err and "--force" in err
    assert load_key_file(tmp_path / "secrets/room1.key") == first
    assert main(["keys", "new", str(room), "--force"]) == 0
    assert load_key_file(tmp_path / "secrets/room1.key").secret != first.secret


def test_show_refuses_a_key_others_can_read(tmp_path: Path, capsys) -> None:
    room = _room(tmp_path)
    assert main(["keys", "new", str(room)]) == 0
    (tmp_path / "room1.key").chmod(0o640)
    capsys.readouterr()
    assert main(["keys", "show", str(room)]) == 2
    assert "chmod 600" in capsys.readouterr().err
