"""Compatibility: the exam engine now lives in :mod:`scheduler.exam` (decision 0010).

Import from ``scheduler.exam``; these names stay importable from here for callers not yet
moved.
"""

from .exam import (
    FINAL_STATUSES,
    SIM_STATE_DIR,
    ExamAborted,
    ExamFaulted,
    ExamProgress,
    ExamResult,
    ExamRunner,
    StepResult,
    exam_from_json,
    make_exam_info,
)

__all__ = [
    "FINAL_STATUSES",
    "SIM_STATE_DIR",
    "ExamAborted",
    "ExamFaulted",
    "ExamProgress",
    "ExamResult",
    "ExamRunner",
    "StepResult",
    "exam_from_json",
    "make_exam_info",
]
