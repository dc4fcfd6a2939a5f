"""Reconstructs an interrupted exam from its folder: the journal plus the images on disk.

The journal (events.jsonl) is the record; every step that ended wrote a ``step_done`` line,
every image a ``capture`` line *after* its DICOM file was linked into place. So after a
crash:

* a step with ``step_done`` is finished, with the status and files recorded there;
* every DICOM file with no ``capture`` line is matched to its step by its *own* attributes —
  its Study Instance UID must be this exam's, its SOP Instance UID the one this exam gives
  its Instance Number, and its Acquisition UID names the protocol step (see
  :func:`scheduler.outputs.dicom.acquisition_uid_for`) — and adopted, for every step: a
  film that exists is never taken again. A step whose images all exist is settled
  ("done"); a tomosynthesis series only partly on disk is handed to the runner as in
  flight. Files of another study, unreadable or unknown files are left alone and listed in
  :attr:`RecoveredExam.ignored` with the reason;
* the first step without ``step_done`` was in flight: :class:`RecoveredExam` says whether its
  fire-once command was sent (``command`` line) and whether a device reported the beam on or
  the injection started, so the runner can decide without ever replaying a fire-once action.

A damaged journal is refused, never "repaired" by deleting records: every line must be a
complete exam event of *this* exam (``seq`` running 1..N, one ``exam_started``, steps of this
protocol, time stamps on this exam's clock), else :class:`RecoveryError` names the line and
the reason and nothing is changed. The one exception is a torn last line — bytes without a
newline at the end, what a write cut short leaves: :func:`reconstruct` with ``repair`` keeps
those bytes in a side file (``events.jsonl.torn-<line>``, fsynced) and only then cuts them
off the journal. A last record complete but for its newline is kept and terminated.
"""

from ._builder import ensure_resumable, reconstruct
from ._journal import read_journal, scan_journal
from ._records import (
    ADOPTED_DETAIL,
    BEAM_EVENTS,
    JOURNAL,
    JOURNALED_DETAIL,
    TORN_SUFFIX,
    IgnoredFile,
    InFlight,
    JournalScan,
    PriorCapture,
    RecoveredExam,
    RecoveryError,
    StepRecord,
    TornTail,
)

__all__ = [
    "ADOPTED_DETAIL",
    "BEAM_EVENTS",
    "JOURNAL",
    "JOURNALED_DETAIL",
    "TORN_SUFFIX",
    "IgnoredFile",
    "InFlight",
    "JournalScan",
    "PriorCapture",
    "RecoveredExam",
    "RecoveryError",
    "StepRecord",
    "TornTail",
    "ensure_resumable",
    "read_journal",
    "reconstruct",
    "scan_journal",
]
