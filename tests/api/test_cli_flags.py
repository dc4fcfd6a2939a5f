"""``fluoroctl --version`` and the top-level ``-v``/``-q`` logging options."""

from __future__ import annotations

import importlib.metadata
import tomllib

from .conftest import ROOT, cli, run_script

PROTOCOL = "configs/protocols/ivu-standard.yaml"


def test_version_is_the_distributions():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert importlib.metadata.version("fluoroctl") == declared
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"fluoroctl {declared}\n"


def test_no_log_lines_by_default_and_info_with_v_debug_with_vv():
    quiet = cli("validate", PROTOCOL)
    assert quiet.returncode == 0 and quiet.stderr == ""
    v = cli("-v", "validate", PROTOCOL)
    assert v.returncode == 0
    assert v.stderr.splitlines() == [f"info: scheduler.cli: fluoroctl {version()}: validate"]
    assert v.stdout == quiet.stdout  # the command's own output is unchanged
    vv = cli("-vv", "validate", PROTOCOL)
    assert "debug: scheduler.cli: arguments: " in vv.stderr
    assert f"info: scheduler.cli: fluoroctl {version()}: validate" in vv.stderr


def test_v_and_q_together_are_refused():
    proc = cli("-v", "-q", "validate", PROTOCOL)
    assert proc.returncode == 2
    assert "not allowed with argument" in proc.stderr


#: main() configures logging for the process; then the project's loggers and a third
#: party's log as they would during a command
LOGS_AFTER_MAIN = """\
import logging
import sys

from scheduler.cli import main

main([*sys.argv[1:], "schema", "--out", "schemas"])
for name in ("scheduler.engine", "drivers.wire.client", "hardware_sim.serve"):
    logging.getLogger(name).info("%s says info", name)
    logging.getLogger(name).warning("%s says warning", name)
    logging.getLogger(name).error("%s says error", name)
logging.getLogger("aiomqtt").info("a library's info")
logging.getLogger("aiomqtt").warning("a library's warning")
"""


def logged(tmp_path, *options: str) -> list[str]:
    proc = run_script(tmp_path, LOGS_AFTER_MAIN, *options)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stderr.splitlines() if "says" in line or "library" in line]


def test_warnings_show_by_default_in_one_format(tmp_path):
    assert logged(tmp_path) == [
        "warning: scheduler.engine: scheduler.engine says warning",
        "error: scheduler.engine: scheduler.engine says error",
        "warning: drivers.wire.client: drivers.wire.client says warning",
        "error: drivers.wire.client: drivers.wire.client says error",
        "warning: hardware_sim.serve: hardware_sim.serve says warning",
        "error: hardware_sim.serve: hardware_sim.serve says error",
        "warning: aiomqtt: a library's warning",
    ]


def test_q_hides_warnings_and_keeps_errors(tmp_path):
    assert logged(tmp_path, "-q") == [
        "error: scheduler.engine: scheduler.engine says error",
        "error: drivers.wire.client: drivers.wire.client says error",
        "error: hardware_sim.serve: hardware_sim.serve says error",
    ]


def test_v_shows_fluoroctls_info_not_every_librarys(tmp_path):
    lines = logged(tmp_path, "-v")
    assert "info: scheduler.engine: scheduler.engine says info" in lines
    assert "info: drivers.wire.client: drivers.wire.client says info" in lines
    assert "info: hardware_sim.serve: hardware_sim.serve says info" in lines
    assert "warning: aiomqtt: a library's warning" in lines
    assert not any("a library's info" in line for line in lines)


def version() -> str:
    return importlib.metadata.version("fluoroctl")
