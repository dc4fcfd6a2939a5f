"""README's install (``pip install -e .``, no extras) in a new environment serves every command
the README shows, ``sim serve`` and a run over links included (issue 11, item 8).

The environment takes its dependencies from the running interpreter's site-packages, which
hold the test extras too; so besides running the commands, every third-party package that
the fluoroctl modules they loaded import is checked to be a requirement of a plain install.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hospital.worklist_peer import Entry, WorklistPeer

from .venvs import ROOT, Venv, copy_source, new_venv, ok

pytestmark = pytest.mark.install

PROTOCOL = "configs/protocols/ivu-standard.yaml"
LINKS_ROOM = "configs/rooms/sim-links.yaml"

#: Imported modules are recorded by a sitecustomize put on PYTHONPATH for the commands: what
#: each process imported after start-up (.pth files of the environment excluded), one file
#: per process.
RECORDER = """
import atexit, json, os, sys
_out = os.environ.get("FLUOROCTL_TEST_IMPORTS")
if _out:
    _before = set(sys.modules)

    def _dump():
        with open(os.path.join(_out, f"{os.getpid()}.json"), "w") as f:
            json.dump(sorted(set(sys.modules) - _before), f)

    atexit.register(_dump)
"""

#: Run in the environment: the third-party packages that the fluoroctl modules the commands
#: loaded import (every import statement in their source, so lazy ones too), and those of
#: them that no requirement of a plain install (no extras) provides. Optional imports made
#: by dependencies themselves (pydicom tries ``requests``) are theirs to declare, not ours.
UNDECLARED = """
import ast, importlib.util, json, sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

owners = packages_distributions()
ours = {top for top, dists in owners.items() if "fluoroctl" in dists}
loaded = set()
for path in Path(sys.argv[1]).glob("*.json"):
    loaded |= {m for m in json.loads(path.read_text()) if m.split(".")[0] in ours}
imported = set()
for name in sorted(loaded):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        continue
    for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
third_party = sorted(imported - ours - set(sys.stdlib_module_names) - {"__future__"})
declared = set()
for text in requires("fluoroctl") or []:
    req = Requirement(text)
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        declared.add(canonicalize_name(req.name))
provided = {top: sorted(canonicalize_name(d) for d in owners.get(top, [])) for top in third_party}
print(json.dumps({
    "loaded": len(loaded),
    "provided": provided,
    "undeclared": [top for top, dists in provided.items() if not declared & set(dists)],
}))
"""


@dataclass
class Clone:
    """A user's clone with ``pip install -e .`` done in a new environment."""

    venv: Venv
    root: Path
    imports: Path
    env: dict[str, str]

    def fluoroctl(self, *args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
        return self.venv.fluoroctl(*args, cwd=self.root, timeout=timeout, env=self.env)

    def popen(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as sink:
            return subprocess.Popen(
                [str(self.venv.bin / "fluoroctl"), *args],
                cwd=self.root,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    base = tmp_path_factory.mktemp("editable")
    root = copy_source(base / "fluoroctl")
    venv = new_venv(base / "venv")
    ok(venv.pip("install", "-e", ".", cwd=root))
    recorder = base / "recorder"
    recorder.mkdir()
    (recorder / "sitecustomize.py").write_text(RECORDER)
    imports = base / "imports"
    imports.mkdir()
    env = {"PYTHONPATH": str(recorder), "FLUOROCTL_TEST_IMPORTS": str(imports)}
    yield Clone(venv, root, imports, env)


def readme_commands() -> set[str]:
    """The ``fluoroctl`` subcommands README.md shows in code (``run``, ``sim serve``, ...)."""
    text = (ROOT / "README.md").read_text()
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S))
    return {
        m.group(1)
        for chunk in fenced + inline
        for m in re.finditer(r"(?:^|[\s&;(])fluoroctl ((?:sim )?[a-z][a-z-]*)", chunk)
    }


def summary(out: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((out / "summary.json").read_text())
    return loaded


def journal_lines(out: Path) -> int:
    path = out / "events.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_the_editable_install_is_the_clone(clone: Clone) -> None:
    found = clone.venv.evaluate(
        "import json, scheduler, scheduler.paths as p; "
        "print(json.dumps([scheduler.__file__, str(p.CONFIG_BASE)]))",
        cwd=clone.root,
    )
    assert Path(found[0]).is_relative_to(clone.root), found  # not the checkout under test
    assert Path(found[1]) == clone.root


def test_every_readme_command_works_on_a_plain_install(
    clone: Clone, tmp_path: Path, worklist_peer: WorklistPeer
) -> None:
    ran: set[str] = set()

    # python3 -m pip install -e . && fluoroctl run configs/protocols/ivu-standard.yaml --out ...
    ok(clone.fluoroctl("run", PROTOCOL, "--out", "out/ivu-standard"))
    assert summary(clone.root / "out/ivu-standard")["state"] == "completed"
    ran.add("run")

    plan = ok(clone.fluoroctl("plan", PROTOCOL))
    assert "Plan: IVU standard" in plan.stdout
    ran.add("plan")

    configs = sorted(str(p.relative_to(clone.root)) for p in clone.root.glob("configs/*/*.yaml"))
    validated = ok(clone.fluoroctl("validate", *configs)).stdout
    assert validated.count(": ok (") == len(configs)
    ran.add("validate")

    before = {p.name: p.read_bytes() for p in (clone.root / "docs").glob("*-schema.json")}
    ok(clone.fluoroctl("schema", "--out", "docs"))
    after = {p.name: p.read_bytes() for p in (clone.root / "docs").glob("*-schema.json")}
    assert after == before  # the published schemas are what this install generates
    ran.add("schema")

    rendered = ok(clone.fluoroctl("sim", "render", "--patient", "normal", "--out", "out/render"))
    assert any(line.endswith(".png") for line in rendered.stdout.split())
    ran.add("sim render")

    # If the process dies, `fluoroctl resume DIR` continues the exam.
    out = clone.root / "out/resumed"
    proc = clone.popen("run", PROTOCOL, "--out", str(out), log=tmp_path / "killed-run.log")
    deadline = time.monotonic() + 120
    while journal_lines(out) < 10:
        assert proc.poll() is None, (tmp_path / "killed-run.log").read_text()
        assert time.monotonic() < deadline, "the exam did not begin within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "summary.json").exists(), "the exam ended before it could be killed"
    ok(clone.fluoroctl("resume", str(out)))
    assert summary(out)["state"] == "completed"
    ran.add("resume")

    # fluoroctl sim serve --room configs/rooms/sim-links.yaml --time-scale 60 &
    # fluoroctl run configs/protocols/ivu-standard.yaml --room configs/rooms/sim-links.yaml ...
    serve_log = tmp_path / "sim-serve.log"
    serve = clone.popen("sim", "serve", "--room", LINKS_ROOM, "--time-scale", "60", log=serve_log)
    try:
        ok(clone.fluoroctl("run", PROTOCOL, "--room", LINKS_ROOM, "--out", "out/links"))
        assert summary(clone.root / "out/links")["state"] == "completed"
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait(timeout=10)
    assert serve.returncode == 0, serve_log.read_text()[-3000:]
    ran.add("sim serve")

    # fluoroctl keys new ROOM: a real room's secret, created private; sim serve made its own.
    room = clone.root / "out/room1.yaml"
    room.write_text((clone.root / "configs/rooms/simulator.yaml").read_text())
    made = ok(clone.fluoroctl("keys", "new", str(room))).stdout
    assert (clone.root / "out/room1.key").stat().st_mode & 0o777 == 0o600
    assert "key_file:" in made
    shown = ok(clone.fluoroctl("keys", "show", LINKS_ROOM)).stdout
    assert "room key" in shown and (clone.root / "run/sim-serve/room.key").exists()
    # fluoroctl calibrate ROOM: dark and flat sets from the room's panel, stored with the room
    calibrated = ok(clone.fluoroctl("calibrate", str(room), "--out", "out/calibration"))
    assert (clone.root / "out/calibration/calibration.json").exists(), calibrated.stdout
    ran.add("calibrate")
    password = ok(clone.fluoroctl("keys", "console", LINKS_ROOM)).stdout.strip()
    assert len(password) == 24 and password.count("-") == 4  # the HTTPS console's login
    ran.add("keys")

    # fluoroctl dicom status DIR: the simulator room has no PACS, so nothing is queued
    status = clone.fluoroctl("dicom", "status", "out/ivu-standard")
    assert status.returncode == 0, status.stderr
    ran.add("dicom")

    # fluoroctl worklist --room ROOM: today's procedures from a real worklist SCP (dcmtk)
    worklist_peer.add(Entry("A2026-0042", "MRN-42", "Doe^Jane"))
    base = (clone.root / "configs/rooms/simulator.yaml").read_text()
    hospital = clone.root / "out/hospital.yaml"
    hospital.write_text(worklist_peer.room_yaml(base))
    listed = json.loads(ok(clone.fluoroctl("worklist", "--room", str(hospital), "--json")).stdout)
    assert [o["accession_number"] for o in listed] == ["A2026-0042"]
    ran.add("worklist")

    # fluoroctl console DIR: a read-only console of a finished exam, at the URL it prints
    console_log = tmp_path / "console.log"
    console = clone.popen("console", "out/ivu-standard", log=console_log)
    try:
        deadline = time.monotonic() + 60
        while "http://127.0.0.1:" not in console_log.read_text():
            assert console.poll() is None, console_log.read_text()
            assert time.monotonic() < deadline, "the console printed no URL"
            time.sleep(0.1)
        url = re.search(r"http://127\.0\.0\.1:\d+/\S*", console_log.read_text())
        assert url is not None
        # the one-time token becomes a session cookie on the redirect to the page
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with browser.open(url.group(0), timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        console.terminate()
        console.wait(timeout=30)
    ran.add("console")

    assert ran == readme_commands()

    result = json.loads(
        ok(
            subprocess.run(
                [clone.venv.python, "-c", UNDECLARED, str(clone.imports)],
                cwd=clone.root,
                capture_output=True,
                text=True,
                timeout=60,
            )
        ).stdout
    )
    used = {dist for dists in result["provided"].values() for dist in dists}
    assert {"pyserial", "pyusb", "aiomqtt", "numpy", "pydicom"} <= used, result
    assert result["undeclared"] == [], result
