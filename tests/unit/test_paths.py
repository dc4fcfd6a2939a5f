"""Where shipped configs are found, and how a bare name becomes a file (scheduler.paths).

The installed-wheel side (``scheduler/_data``) is exercised by tests/install/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler import paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with nothing of fluoroctl in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def put(base: Path, relative: str, text: str = "x: 1\n") -> Path:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_checkout_reads_its_own_configs_and_docs() -> None:
    assert paths.checkout_root() == ROOT
    assert paths.CONFIG_BASE == ROOT
    assert paths.shipped_dir("rooms") == ROOT / "configs" / "rooms"
    assert paths.schema_dir() == ROOT / "docs"


def test_a_bare_name_is_a_shipped_protocol_or_room(elsewhere: Path) -> None:
    assert paths.protocol_path("ivu-standard") == ROOT / "configs/protocols/ivu-standard.yaml"
    assert paths.room_path("sim-links") == ROOT / "configs/rooms/sim-links.yaml"


def test_the_working_directorys_configs_come_first(elsewhere: Path) -> None:
    put(elsewhere, "configs/protocols/ivu-standard.yaml")
    put(elsewhere, "configs/rooms/mine.yml")
    assert paths.protocol_path("ivu-standard") == Path("configs/protocols/ivu-standard.yaml")
    assert paths.room_path("mine") == Path("configs/rooms/mine.yml")
    assert paths.room_path("simulator") == ROOT / "configs/rooms/simulator.yaml"


@pytest.mark.parametrize(
    "given", ["ivu-standard.yaml", "protocols/ivu-standard", "./ivu-standard", "/abs/x.yml"]
)
def test_paths_are_taken_as_given(elsewhere: Path, given: str) -> None:
    assert paths.protocol_path(given) == Path(given)


def test_a_file_named_like_a_protocol_is_that_file(elsewhere: Path) -> None:
    put(elsewhere, "ivu-standard")
    assert paths.protocol_path("ivu-standard") == Path("ivu-standard")


def test_an_unknown_name_is_left_for_the_loader_to_report(elsewhere: Path) -> None:
    assert paths.protocol_path("ivu-standrd") == Path("ivu-standrd")
    assert paths.room_path("nowhere") == Path("nowhere")


def test_default_room_is_the_working_directorys_else_the_shipped_one(elsewhere: Path) -> None:
    assert paths.default_room_path() == ROOT / "configs/rooms/simulator.yaml"
    put(elsewhere, "configs/rooms/simulator.yaml")
    assert paths.default_room_path() == Path("configs/rooms/simulator.yaml")


@pytest.mark.parametrize(
    ("text", "bare"),
    [
        ("normal", True),
        ("ivu.v2", True),
        ("normal.yaml", False),
        ("x.yml", False),
        ("a/b", False),
        ("./normal", False),
    ],
)
def test_what_counts_as_a_bare_name(text: str, bare: bool) -> None:
    assert paths.is_bare_name(text) is bare


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "ivu-standard", "--room", "simulator", "--out", "x"],
        ["plan", "ivu-standard", "--room", "simulator"],
    ],
)
def test_the_cli_takes_shipped_names_for_protocols_and_rooms(
    elsewhere: Path, argv: list[str]
) -> None:
    from scheduler.cli import _parser

    args = _parser().parse_args(argv)
    assert args.protocol == ROOT / "configs/protocols/ivu-standard.yaml"
    assert args.room == ROOT / "configs/rooms/simulator.yaml"


def test_sim_serve_takes_a_shipped_room_by_name(elsewhere: Path) -> None:
    from scheduler.cli import _parser

    args = _parser().parse_args(["sim", "serve", "--room", "sim-links"])
    assert args.room == ROOT / "configs/rooms/sim-links.yaml"
