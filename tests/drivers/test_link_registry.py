"""Transports are imported by scheme, only when used; a missing library is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter where aiomqtt and pyusb cannot be imported (as on a serial-only
# integrator's machine): a meta-path finder refuses them.
BLOCK = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def run_without(blocked: set[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(blocked=blocked) + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serial_link_opens_without_aiomqtt_or_pyusb() -> None:
    done = run_without(
        {"aiomqtt", "usb"},
        "from drivers.links import open_link\n"
        "import drivers.remote, drivers.wire.client\n"
        "link = open_link('serial+loop://')\n"
        "print(type(link).__name__)\n"
        "assert 'aiomqtt' not in sys.modules and 'usb' not in sys.modules\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SerialLink"


def test_mqtt_without_aiomqtt_is_one_line_naming_the_package() -> None:
    done = run_without(
        {"aiomqtt"},
        "from drivers.links import open_link, TransportUnavailable\n"
        "try:\n"
        "    open_link('mqtt://127.0.0.1:1883/fluoroctl/x')\n"
        "except TransportUnavailable as exc:\n"
        "    assert isinstance(exc, ValueError) and isinstance(exc, ImportError)\n"
        "    print(exc)\n",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    assert "mqtt://" in lines[0] and "pip install aiomqtt" in lines[0]


def test_usb_without_pyusb_names_pyusb() -> None:
    done = run_without(
        {"usb"},
        "from drivers.links import open_link\n"
        "try:\n"
        "    open_link('usb://1209:f10c')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n",
    )
    assert done.returncode == 0, done.stderr
    assert "pip install pyusb" in done.stdout


def test_in_process_missing_module_via_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.links import TransportUnavailable, open_link

    # None in sys.modules makes an import raise ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "aiomqtt", None)
    monkeypatch.delitem(sys.modules, "drivers.links._mqtt", raising=False)
    with pytest.raises(TransportUnavailable, match="pip install aiomqtt"):
        open_link("mqtt://127.0.0.1:1883/x")
    assert type(open_link("serial+loop://")).__name__ == "SerialLink"


def test_unknown_scheme_names_the_forms() -> None:
    from drivers.links import open_link

    with pytest.raises(ValueError, match="unknown scheme 'carrier-pigeon'"):
        open_link("carrier-pigeon://coop")


def test_a_transport_registered_by_entry_point_is_used(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "pigeon_link-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-link\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fluoroctl.links]\npigeon = pigeon_link:PigeonLink\n")
    (site / "pigeon_link.py").write_text(
        "from drivers.links import MemoryCable\n"
        "def PigeonLink(url):\n"
        "    return MemoryCable().host_link()\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(site)!r})\n"
            "from drivers.links import open_link\n"
            "assert 'pigeon_link' not in sys.modules\n"
            "link = open_link('pigeon://coop')\n"
            "print(type(link).__module__)\n",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "drivers.links.memory"
