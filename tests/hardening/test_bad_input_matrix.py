"""Hazard matrix: malformed protocol, room and patient files given to ``run`` and ``validate``.

Each case is a shipped file mutated one way. For every one: exit code 2, exactly one line on
stderr (``error: ...``), no traceback, the output folder not created, no device opened and no
event loop created. The cases run in-process; a handful also run as a real
``python -m scheduler.cli`` process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import drivers.backends as backends
import scheduler.cli_run as cli_run
import scheduler.compose as compose
from drivers.config import MAX_FILE_BYTES
from scheduler.cli import main

from ..conftest import ROOT

PROTOCOL = (ROOT / "configs/protocols/ivu-standard.yaml").read_text()
ROOM = (ROOT / "configs/rooms/simulator.yaml").read_text()
PATIENT = (ROOT / "configs/patients/normal.yaml").read_text()
GOOD_PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"

# Markers for cases that are not a file's text.
MISSING = object()  # a path where no file is
DIRECTORY = object()  # a directory given as the file


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # protocol | room | patient | patient-name
    content: str | bytes | object  # file text/bytes, MISSING, DIRECTORY, or a patient name


def sub(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced: fails loudly if the shipped file no longer has it."""
    assert old in text, f"mutation target {old!r} not in the shipped file"
    return text.replace(old, new, count)


def at_last(value: str) -> str:
    """The last timed capture (release-15min) at ``value``: no later step checks its order."""
    return sub(PROTOCOL, "      at: 15min\n", f"      at: {value}\n")


def technique(value: str) -> str:
    return sub(PROTOCOL, "technique: {kv: 72, mas: 32, ma: 500}", f"technique: {value}")


def phase(value: str) -> str:
    return sub(PROTOCOL, "- {flow_ml_s: 4.0, volume_ml: 50}", f"- {value}")


def add_step(yaml_text: str) -> str:
    return PROTOCOL + yaml_text


FLUORO = (
    "    - id: look\n      type: fluoro\n      at: 20min\n      pulse_rate_hz: {rate}\n"
    "      duration_s: {duration}\n      technique: {{kv: {kv}, ma: {ma}, pulse_ms: {pulse}}}\n"
)


def fluoro(rate: float = 3, duration: float = 4, kv: float = 80, ma: float = 10, pulse=8) -> str:
    return add_step(FLUORO.format(rate=rate, duration=duration, kv=kv, ma=ma, pulse=pulse))


def deep(depth: int) -> str:
    return "protocol: " + "[" * depth + "]" * depth + "\n"


def alias_bomb(root_key: str) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join([*lines, f"{root_key}: {{references: *a9}}"]) + "\n"


def oversized(text: str) -> str:
    return text + "#" * (MAX_FILE_BYTES + 1) + "\n"


def room_links(carm: str, table: str = "sim://table", injector: str = "sim://injector") -> str:
    text = sub(ROOM, "    carm: sim://carm", f"    carm: {carm}")
    text = sub(text, "    table: sim://table", f"    table: {table}")
    text = sub(text, "    injector: sim://injector", f"    injector: {injector}")
    return (
        text if carm.startswith(("sim:", "mock:")) else sub(text, "clock: virtual", "clock: real")
    )


PROTOCOL_CASES = [
    # duplicate keys
    Case("dup-key-volume", "protocol", phase("{flow_ml_s: 4.0, volume_ml: 50, volume_ml: 150}")),
    Case(
        "dup-key-at",
        "protocol",
        sub(PROTOCOL, "      at: 5min\n", "      at: 5min\n      at: 6min\n"),
    ),
    Case(
        "dup-key-name",
        "protocol",
        sub(PROTOCOL, "  name: IVU standard\n", "  name: IVU standard\n  name: x\n"),
    ),
    Case("dup-root-key", "protocol", PROTOCOL + "protocol: {name: again}\n"),
    # impossible times
    Case("at-inf", "protocol", at_last(".inf")),
    Case("at-nan", "protocol", at_last(".nan")),
    Case("at-minus-inf", "protocol", at_last("-.inf")),
    Case("at-1e300-string", "protocol", at_last("1e300")),
    Case("at-1e300-float", "protocol", at_last("1.0e+300")),
    Case("at-100000h", "protocol", at_last("100000h")),
    Case("at-25h", "protocol", at_last("25h")),
    Case("at-huge-int", "protocol", at_last("9" * 400)),
    Case("at-negative-string", "protocol", at_last("-5s")),
    Case("at-negative-number", "protocol", at_last("-1")),
    Case("at-garbage", "protocol", at_last("soon")),
    Case("at-bool", "protocol", at_last("true")),
    Case(
        "at-before-injection",
        "protocol",
        sub(PROTOCOL, "      label: Scout KUB\n", "      label: Scout KUB\n      at: 10s\n"),
    ),
    Case("at-backwards", "protocol", sub(PROTOCOL, "      at: 10min\n", "      at: 2min\n")),
    Case(
        "two-films-one-time-point",
        "protocol",
        sub(PROTOCOL, "      at: 10min\n", "      at: 5min\n"),
    ),
    Case(
        "tolerance-nan",
        "protocol",
        sub(PROTOCOL, "      tolerance_s: 2\n", "      tolerance_s: .nan\n"),
    ),
    Case(
        "tolerance-negative",
        "protocol",
        sub(PROTOCOL, "      tolerance_s: 2\n", "      tolerance_s: -1\n"),
    ),
    # wrong types and ranges
    Case("kv-wrong-type", "protocol", technique("{kv: high, mas: 32}")),
    Case("kv-out-of-range", "protocol", technique("{kv: 300, mas: 32}")),
    Case("mas-nan", "protocol", technique("{kv: 72, mas: .nan}")),
    Case("mas-inf", "protocol", technique("{kv: 72, mas: .inf}")),
    Case("technique-not-a-mapping", "protocol", technique("[72, 32]")),
    Case("angulation-too-steep", "protocol", sub(PROTOCOL, "angle_deg: 15", "angle_deg: 90")),
    Case(
        "bad-position",
        "protocol",
        sub(
            PROTOCOL,
            "view: {position: prone, field: kub}",
            "view: {position: standing, field: kub}",
        ),
    ),
    Case("bad-step-id", "protocol", sub(PROTOCOL, "- id: scout\n", "- id: bad id!\n")),
    Case("duplicate-step-id", "protocol", sub(PROTOCOL, "- id: prone\n", "- id: scout\n")),
    Case("steps-empty", "protocol", sub(PROTOCOL, "  steps:\n", "  steps: []\n  old_steps:\n")),
    Case(
        "when-paused-invalid",
        "protocol",
        sub(PROTOCOL, "  steps:\n", "  when_paused: later\n  steps:\n"),
    ),
    Case(
        "fault-override-invalid",
        "protocol",
        sub(PROTOCOL, "  steps:\n", "  faults: {dropped_radiograph: maybe}\n  steps:\n"),
    ),
    # unknown and missing fields
    Case(
        "unknown-top-field",
        "protocol",
        sub(PROTOCOL, "  name: IVU standard\n", "  name: IVU standard\n  nmae: x\n"),
    ),
    Case(
        "unknown-step-field",
        "protocol",
        sub(PROTOCOL, "      label: Scout KUB\n", "      lable: Scout KUB\n"),
    ),
    Case("unknown-step-type", "protocol", sub(PROTOCOL, "type: inject", "type: injekt")),
    Case("unknown-view-field", "protocol", sub(PROTOCOL, "field: bladder,", "field: liver,")),
    Case("missing-name", "protocol", sub(PROTOCOL, "  name: IVU standard\n", "")),
    Case("missing-root-key", "protocol", sub(PROTOCOL, "protocol:\n", "protokol:\n")),
    Case(
        "missing-contrast",
        "protocol",
        sub(PROTOCOL, "  contrast:\n    agent: Iohexol 300\n    concentration_mg_ml: 300\n", ""),
    ),
    Case("missing-phases", "protocol", sub(PROTOCOL, "      phases:\n", "      old_phases:\n")),
    Case(
        "phases-empty",
        "protocol",
        sub(PROTOCOL, "      phases:\n", "      phases: []\n      old_phases:\n"),
    ),
    Case(
        "two-pressure-limits",
        "protocol",
        sub(
            PROTOCOL,
            "      pressure_limit_psi: 300",
            "      pressure_limit_psi: 300\n      pressure_limit_kpa: 2000",
        ),
    ),
    Case("no-pressure-limit", "protocol", sub(PROTOCOL, "      pressure_limit_psi: 300", "")),
    Case(
        "second-injection",
        "protocol",
        add_step(
            "    - id: again\n      type: inject\n      phases: [{flow_ml_s: 2, volume_ml: 10}]\n      pressure_limit_psi: 300\n"
        ),
    ),
    # beyond the injector driver's ranges (the run used to X-ray the scout, then fail)
    Case("flow-below-driver", "protocol", phase("{flow_ml_s: 0.05, volume_ml: 50}")),
    Case("volume-below-driver", "protocol", phase("{flow_ml_s: 4.0, volume_ml: 0.2}")),
    Case(
        "pressure-below-driver",
        "protocol",
        sub(PROTOCOL, "pressure_limit_psi: 300", "pressure_limit_kpa: 50"),
    ),
    Case("exposure-too-long-for-generator", "protocol", technique("{kv: 72, mas: 1000, ma: 100}")),
    Case("exposure-too-short-for-generator", "protocol", technique("{kv: 72, mas: 0.05, ma: 500}")),
    Case("fluoro-pulse-below-driver", "protocol", fluoro(pulse=0.2)),
    Case("fluoro-duration-too-long", "protocol", fluoro(duration=1000)),
    # beyond the room's limits (the run used to X-ray the scout, then refuse at arm time)
    Case("flow-beyond-room", "protocol", phase("{flow_ml_s: 6, volume_ml: 50}")),
    Case("volume-beyond-room", "protocol", phase("{flow_ml_s: 4.0, volume_ml: 200}")),
    Case(
        "pressure-beyond-room",
        "protocol",
        sub(PROTOCOL, "pressure_limit_psi: 300", "pressure_limit_psi: 400"),
    ),
    Case("fluoro-rate-beyond-room", "protocol", fluoro(rate=30, kv=125, ma=100)),
    # YAML damage and hostile files
    Case(
        "yaml-unclosed-bracket",
        "protocol",
        sub(PROTOCOL, "{kv: 72, mas: 32, ma: 500}", "{kv: 72, mas: 32, ma: 500"),
    ),
    Case(
        "yaml-tab-indent", "protocol", sub(PROTOCOL, "  name: IVU standard", "\tname: IVU standard")
    ),
    Case(
        "yaml-bad-indent",
        "protocol",
        sub(PROTOCOL, "  name: IVU standard", "    name: IVU standard"),
    ),
    Case("deep-nesting-recursion", "protocol", deep(5000)),
    Case("deep-nesting-moderate", "protocol", deep(200)),
    Case("alias-bomb", "protocol", alias_bomb("protocol")),
    Case("recursive-alias", "protocol", "protocol: &p\n  name: x\n  loop: *p\n"),
    Case("oversized", "protocol", oversized(PROTOCOL)),
    Case("non-utf8", "protocol", PROTOCOL.encode().replace(b"IVU standard", b"IVU standar\xe9", 1)),
    Case("binary-garbage", "protocol", bytes(range(256)) * 16),
    Case("control-character", "protocol", sub(PROTOCOL, "IVU standard", "IVU\x07standard")),
    Case("empty", "protocol", ""),
    Case("only-a-comment", "protocol", "# nothing here\n"),
    Case("list-top-level", "protocol", "- " + PROTOCOL.replace("\n", "\n  ")),
    Case("scalar-top-level", "protocol", "just some text\n"),
    Case("two-documents", "protocol", PROTOCOL + "---\n" + PROTOCOL),
    Case("python-tag", "protocol", "protocol: !!python/object/apply:os.system ['true']\n"),
    Case(
        "bad-timestamp",
        "protocol",
        sub(PROTOCOL, '  procedure_code: "74400"', "  procedure_code: 2026-13-45"),
    ),
    Case("missing-file", "protocol", MISSING),
    Case("directory", "protocol", DIRECTORY),
]

ROOM_CASES = [
    Case(
        "room-dup-key",
        "room",
        sub(ROOM, "    max_volume_ml: 150\n", "    max_volume_ml: 150\n    max_volume_ml: 500\n"),
    ),
    Case("room-unknown-scheme", "room", room_links("foo://carm")),
    Case("room-no-scheme", "room", sub(ROOM, "    carm: sim://carm", "    carm: carm")),
    Case("room-injector-unknown-scheme", "room", room_links("sim://carm", injector="acme2://inj")),
    Case(
        "room-malformed-tcp-url",
        "room",
        room_links("tcp://127.0.0.1", "tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"),
    ),
    Case(
        "room-virtual-clock-on-wire",
        "room",
        sub(ROOM, "    carm: sim://carm", "    carm: tcp://127.0.0.1:7000"),
    ),
    Case("room-flow-limit-inf", "room", sub(ROOM, "max_flow_ml_s: 5.0", "max_flow_ml_s: .inf")),
    Case(
        "room-volume-limit-negative", "room", sub(ROOM, "max_volume_ml: 150", "max_volume_ml: -5")
    ),
    Case(
        "room-dose-nan",
        "room",
        sub(ROOM, "  operator:\n", "  dose: {max_fluoro_time_s: .nan}\n  operator:\n"),
    ),
    Case(
        "room-operator-delay-negative",
        "room",
        sub(ROOM, "    mode: scripted\n", "    mode: scripted\n    delays_s: {void: -5}\n"),
    ),
    Case("room-operator-mode", "room", sub(ROOM, "    mode: scripted", "    mode: robot")),
    Case(
        "room-unknown-field",
        "room",
        sub(ROOM, "  clock: virtual", "  clock: virtual\n  colour: blue"),
    ),
    Case(
        "room-missing-devices",
        "room",
        sub(
            ROOM,
            "  devices:\n    carm: sim://carm\n    table: sim://table\n    injector: sim://injector\n",
            "",
        ),
    ),
    Case(
        "room-station-name-too-long",
        "room",
        sub(ROOM, "station_name: SIMROOM1", "station_name: A-VERY-LONG-STATION-NAME"),
    ),
    Case(
        "room-fault-policy-invalid",
        "room",
        sub(ROOM, "  operator:\n", "  faults: {link_lost: {carm: maybe}}\n  operator:\n"),
    ),
    Case("room-unknown-patient", "room", sub(ROOM, "patient: normal", "patient: nobody")),
    Case(
        "room-patient-file-missing",
        "room",
        sub(ROOM, "patient: normal", "patient: /nonexistent/p.yaml"),
    ),
    Case("room-empty", "room", ""),
    Case(
        "room-yaml-syntax",
        "room",
        sub(ROOM, "  name: fluoroctl simulator", "  name: [fluoroctl simulator"),
    ),
    Case("room-alias-bomb", "room", alias_bomb("room")),
]

PATIENT_CASES = [
    Case("patient-dup-key", "patient", sub(PATIENT, "  sex: F\n", "  sex: F\n  sex: M\n")),
    Case(
        "patient-date-month-13",
        "patient",
        sub(PATIENT, "birth_date: 1971-05-14", "birth_date: 2026-13-45"),
    ),
    Case(
        "patient-date-feb-30",
        "patient",
        sub(PATIENT, "birth_date: 1971-05-14", "birth_date: 2026-02-30"),
    ),
    Case(
        "patient-date-garbage",
        "patient",
        sub(PATIENT, "birth_date: 1971-05-14", "birth_date: yesterday"),
    ),
    Case("patient-hydration-nan", "patient", sub(PATIENT, "hydration: 1.0", "hydration: .nan")),
    Case("patient-weight-negative", "patient", sub(PATIENT, "weight_kg: 70", "weight_kg: -3")),
    Case("patient-gauge-type", "patient", sub(PATIENT, "gauge: 18", "gauge: big")),
    Case("patient-unknown-field", "patient", sub(PATIENT, "  sex: F\n", "  sex: F\n  blood: A\n")),
    Case("patient-missing-name", "patient", sub(PATIENT, "  name: Normal^Simulated\n", "")),
    Case("patient-sex-invalid", "patient", sub(PATIENT, "  sex: F\n", "  sex: X\n")),
    Case(
        "patient-yaml-syntax",
        "patient",
        sub(PATIENT, "build: {height_cm: 168", "build: {height_cm: 168,,"),
    ),
    Case("patient-empty", "patient", ""),
    Case("patient-list-top-level", "patient", "- patient: {id: x}\n"),
    Case("patient-oversized", "patient", oversized(PATIENT)),
    Case("patient-file-missing", "patient", MISSING),
    Case("patient-unknown-name", "patient-name", "nobody"),
    Case("patient-name-with-spaces", "patient-name", "no such patient"),
]

CASES = PROTOCOL_CASES + ROOM_CASES + PATIENT_CASES


def test_the_matrix_is_large_and_distinct():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    files = [(c.kind, c.content) for c in CASES if isinstance(c.content, str | bytes)]
    assert len(set(files)) == len(files), "two cases are the same file"


def materialise(case: Case, tmp_path: Path) -> str:
    """The file (or patient name) the case hands to the CLI."""
    if case.kind == "patient-name":
        assert isinstance(case.content, str)
        return case.content
    path = tmp_path / f"{case.id}.yaml"
    if case.content is DIRECTORY:
        path.mkdir()
    elif isinstance(case.content, bytes):
        path.write_bytes(case.content)
    elif isinstance(case.content, str):
        path.write_text(case.content, encoding="utf-8")
    else:
        assert case.content is MISSING
    return str(path)


def run_argv(case: Case, target: str, out: Path) -> list[str]:
    if case.kind == "protocol":
        return ["run", target, "--out", str(out)]
    if case.kind == "room":
        return ["run", str(GOOD_PROTOCOL), "--room", target, "--out", str(out)]
    return ["run", str(GOOD_PROTOCOL), "--patient", target, "--out", str(out)]


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every attempt to look up a backend, open devices or create the event loop."""
    calls: list[str] = []

    def record(name: str) -> Callable[..., object]:
        def called(*args: object, **kwargs: object) -> object:
            calls.append(name)
            raise AssertionError(f"{name} called for a bad input")

        return called

    monkeypatch.setattr(compose, "open_devices", record("open_devices"))
    monkeypatch.setattr(compose, "backend_for_links", record("backend_for_links"))
    monkeypatch.setattr(backends, "backend_for_links", record("backend_for_links"))
    monkeypatch.setattr(backends, "find_backend", record("find_backend"))
    monkeypatch.setattr(cli_run, "new_event_loop", record("new_event_loop"))
    return calls


#: what asyncio logs, through whatever handler is current, when the garbage collector frees a
#: task still pending on a loop an earlier test in this worker closed (two lines each)
_FOREIGN_TASK = ("error: asyncio: Task was destroyed but it is pending!", "task: <Task pending ")


def _own_lines(err: str) -> list[str]:
    """The CLI's lines of ``err``, without asyncio's reports of other tests' tasks (this CLI
    started no loop: the ``opened`` fixture fails the test if it tries)."""
    return [
        line for line in err.splitlines() if line.strip() and not line.startswith(_FOREIGN_TASK)
    ]


def assert_one_error_line(err: str, case: Case, target: str) -> str:
    assert "Traceback" not in err
    lines = _own_lines(err)
    assert len(lines) == 1, f"{case.id}: expected one line, got {lines}"
    line = lines[0]
    assert line.startswith("error: "), line
    if case.kind in ("protocol", "patient"):
        assert target in line, f"{case.id}: the message does not name the file: {line}"
    elif case.kind == "patient-name":
        assert "--patient" in line and target in line
    else:
        assert target in line or "--patient" in line, line
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_run_refuses_bad_input(case, tmp_path, capsys, opened):
    target = materialise(case, tmp_path)
    out = tmp_path / "out"
    code = main(run_argv(case, target, out))
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert_one_error_line(captured.err, case, target)
    assert captured.out == ""
    assert not out.exists(), "the output folder was created for a bad input"
    assert opened == []


VALIDATABLE = [c for c in CASES if c.kind != "patient-name"]


@pytest.mark.parametrize("case", VALIDATABLE, ids=[c.id for c in VALIDATABLE])
def test_validate_refuses_bad_input(case, tmp_path, capsys, opened):
    target = materialise(case, tmp_path)
    code = main(["validate", target])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert_one_error_line(captured.err, case, target)
    assert captured.out == ""
    assert opened == []


PROCESS_CASES = [
    "dup-key-volume",
    "alias-bomb",
    "deep-nesting-recursion",
    "room-unknown-scheme",
    "patient-date-month-13",
    "flow-below-driver",
]


@pytest.mark.parametrize("case_id", PROCESS_CASES)
def test_as_a_real_process(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    target = materialise(case, tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *run_argv(case, target, out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, case, target)
    assert proc.stdout == ""
    assert not out.exists()
