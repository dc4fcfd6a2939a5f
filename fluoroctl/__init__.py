"""fluoroctl's Python API: run, resume and check fluoroscopy exams from Python.

Everything public is importable from here; the modules behind it are private. See
docs/api.md::

    import fluoroctl

    outcome = fluoroctl.run_exam("ivu-standard", out="exam-001")
    print(outcome.state, outcome.exit_code, len(outcome.images))

:func:`run_exam` blocks and makes the event loop the room needs; inside a running loop
(Jupyter) ``await`` :func:`run_exam_async`. Results are frozen dataclasses
(:class:`ExamOutcome`, :class:`StepOutcome`); pytest fixtures are in
:mod:`fluoroctl.testing`.

Names are imported on first use (as python-can does): ``import fluoroctl`` and the pytest
plugin, which pytest loads in every session once fluoroctl is installed, stay cheap; the
scheduler, DICOM and imaging stack load when an exam is run or a file checked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import installed_version

if TYPE_CHECKING:
    from drivers import DeviceError
    from drivers.config import ConfigError
    from scheduler.exam_dir import ExamFolderError
    from scheduler.journal import ExamEvent
    from scheduler.links import LinkConfigError
    from scheduler.protocol import Protocol
    from scheduler.recovery import RecoveryError
    from scheduler.room import Room
    from scheduler.state import RunState

    from ._results import DoseReport, ExamOutcome, StepOutcome, StepStatus, Totals, read_outcome
    from ._run import resume_exam, resume_exam_async, run_exam, run_exam_async
    from ._sources import PathOrName, ProtocolSource, RoomSource, load_protocol, load_room
    from ._validate import Finding, validate

__version__ = installed_version()

#: public name → the module that defines it
_HOME = {
    "DeviceError": "drivers",
    "ConfigError": "drivers.config",
    "ExamFolderError": "scheduler.exam_dir",
    "ExamEvent": "scheduler.journal",
    "LinkConfigError": "scheduler.links",
    "Protocol": "scheduler.protocol",
    "RecoveryError": "scheduler.recovery",
    "Room": "scheduler.room",
    "RunState": "scheduler.state",
    "DoseReport": "fluoroctl._results",
    "ExamOutcome": "fluoroctl._results",
    "StepOutcome": "fluoroctl._results",
    "StepStatus": "fluoroctl._results",
    "Totals": "fluoroctl._results",
    "read_outcome": "fluoroctl._results",
    "resume_exam": "fluoroctl._run",
    "resume_exam_async": "fluoroctl._run",
    "run_exam": "fluoroctl._run",
    "run_exam_async": "fluoroctl._run",
    "PathOrName": "fluoroctl._sources",
    "ProtocolSource": "fluoroctl._sources",
    "RoomSource": "fluoroctl._sources",
    "load_protocol": "fluoroctl._sources",
    "load_room": "fluoroctl._sources",
    "Finding": "fluoroctl._validate",
    "validate": "fluoroctl._validate",
}

__all__ = [
    "ConfigError",
    "DeviceError",
    "DoseReport",
    "ExamEvent",
    "ExamFolderError",
    "ExamOutcome",
    "Finding",
    "LinkConfigError",
    "PathOrName",
    "Protocol",
    "ProtocolSource",
    "RecoveryError",
    "Room",
    "RoomSource",
    "RunState",
    "StepOutcome",
    "StepStatus",
    "Totals",
    "__version__",
    "load_protocol",
    "load_room",
    "read_outcome",
    "resume_exam",
    "resume_exam_async",
    "run_exam",
    "run_exam_async",
    "validate",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'fluoroctl' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
