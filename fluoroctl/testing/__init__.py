"""Testing helpers for fluoroctl protocols, rooms and drivers.

The pytest plugin (:mod:`fluoroctl.testing.plugin`, loaded by the ``pytest11`` entry point
when fluoroctl is installed) provides the fixtures ``sim_room``, ``exam_out``,
``run_protocol`` and ``shared_exam`` and the markers ``slow`` and ``links``. Outside pytest,
:func:`run_protocol` is the same call.
"""

from ._exam import ExamRun, JournalEntry, RunProtocol, read_journal, run_protocol

__all__ = ["ExamRun", "JournalEntry", "RunProtocol", "read_journal", "run_protocol"]
