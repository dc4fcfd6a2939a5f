"""Room links resolved for a run: endpoints placeholders, brokers, time scale agreement."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from scheduler.cli import run_links
from scheduler.links import (
    Endpoints,
    LinkConfigError,
    load_endpoints,
    resolve_links,
    write_endpoints,
)
from scheduler.room import load_room

ROOT = Path(__file__).resolve().parents[2]


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**({"endpoints": None, "broker": None, "time_scale": None} | kw))


def test_placeholders_and_broker_filled_from_endpoints(tmp_path: Path) -> None:
    ep = Endpoints(
        tmp_path / "endpoints.json",
        {
            "carm": "/tmp/x/carm.tty",
            "table": "/tmp/x/table.tty",
            "detector_host": "127.0.0.1",
            "detector_port": "4000",
            "effects": "127.0.0.1:4001",
        },
        broker="mqtt://127.0.0.1:18830",
        time_scale=60.0,
        pid=os.getpid(),
    )
    write_endpoints(ep)
    room = load_room(ROOT / "configs/rooms/sim-links.yaml")
    links, scale = run_links(room, _args(endpoints=ep.path))
    assert links["carm"] == "serial:///tmp/x/carm.tty?baudrate=115200"
    assert links["injector"] == "mqtt://127.0.0.1:18830/fluoroctl/simroom/injector"
    assert links["detector"] == "usb://1209:f10c?backend=sim&host=127.0.0.1&port=4000"
    assert scale == 60.0
    # an explicit broker wins over the one sim serve started
    links, _ = run_links(room, _args(endpoints=ep.path, broker="mqtt://10.1.2.3:1884"))
    assert links["injector"].startswith("mqtt://10.1.2.3:1884/")


def test_time_scale_mismatch_is_refused(tmp_path: Path) -> None:
    ep = Endpoints(
        tmp_path / "e.json",
        {"carm": "/a", "table": "/b", "detector_host": "h", "detector_port": "1", "effects": "h:2"},
        "mqtt://127.0.0.1:1",
        60.0,
    )
    write_endpoints(ep)
    room = load_room(ROOT / "configs/rooms/sim-links.yaml")
    with pytest.raises(LinkConfigError, match="differs from the simulated room's 60"):
        run_links(room, _args(endpoints=ep.path, time_scale=30.0))


def test_missing_endpoints_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LinkConfigError, match="sim serve"):
        load_endpoints(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1,\n "links": }')
    with pytest.raises(LinkConfigError, match=r"bad.json:2"):
        load_endpoints(bad)


def test_unknown_placeholder_and_missing_broker_are_named(tmp_path: Path) -> None:
    ep = Endpoints(tmp_path / "e.json", {"carm": "/a"})
    with pytest.raises(LinkConfigError, match=r"table link serial://\$\{table\}.*has: carm"):
        resolve_links({"table": "serial://${table}"}, endpoints=ep, broker=None, room_broker=None)
    with pytest.raises(LinkConfigError, match="names no broker"):
        resolve_links({"injector": "mqtt:///a/b"}, endpoints=None, broker=None, room_broker=None)


def test_virtual_room_refuses_time_scale() -> None:
    room = load_room(ROOT / "configs/rooms/simulator.yaml")
    with pytest.raises(LinkConfigError, match="virtual time"):
        run_links(room, _args(time_scale=60.0))
    links, scale = run_links(room, _args())
    assert scale == 1.0 and links["carm"] == "sim://carm"


def test_endpoints_file_round_trip(tmp_path: Path) -> None:
    ep = Endpoints(tmp_path / "e.json", {"carm": "/dev/pts/9"}, None, 12.5, 99)
    write_endpoints(ep)
    assert json.loads(ep.path.read_text())["version"] == 1
    back = load_endpoints(ep.path)
    assert back.links == ep.links and back.time_scale == 12.5 and back.pid == 99


def test_stale_endpoints_file_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    from scheduler.links import wait_for_endpoints

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    ep = Endpoints(tmp_path / "e.json", {"carm": "/a"}, None, 1.0, int(dead.stdout))
    write_endpoints(ep)
    with pytest.raises(LinkConfigError, match="stale endpoints file"):
        wait_for_endpoints(ep.path, timeout_s=0.5)
    live = Endpoints(tmp_path / "l.json", {"carm": "/a"}, None, 1.0, os.getpid())
    write_endpoints(live)
    assert wait_for_endpoints(live.path, timeout_s=0.5).links == {"carm": "/a"}


@pytest.mark.parametrize(
    ("broker", "says"),
    [
        ("mqtt+tls://127.0.0.1:8883?password=hunter2", "password"),
        ("ftp://127.0.0.1", "mqtt"),
    ],
)
def test_a_bad_broker_in_the_room_file_is_named_at_load(
    tmp_path: Path, broker: str, says: str
) -> None:
    from drivers.config import ConfigError

    text = (ROOT / "configs/rooms/sim-links.yaml").read_text()
    text = text.replace("  # broker: mqtt://127.0.0.1:1883", f"  broker: {broker}")
    path = tmp_path / "room.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_room(path)
    message = str(err.value)
    assert "broker" in message and says in message and "hunter2" not in message
    assert str(path) in message
