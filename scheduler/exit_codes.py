"""What ``fluoroctl run`` and ``resume`` exit with, so CI can tell the outcomes apart.

====  =================================================================
code  meaning
====  =================================================================
0     the exam completed and every step was done (or taken late)
3     the exam completed, but steps were missed or failed
1     the exam was aborted or faulted (devices were put in their safe state)
2     bad input: a file, an option, an exam folder in use; nothing was started
130   interrupted (Ctrl-C, SIGTERM): aborted into the safe state first
====  =================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .exam import ExamResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


def exit_code_for(result: ExamResult) -> int:
    return exit_code_of(result.state, result.interrupted, tuple(result.unfinished_steps))


def exit_code_of(state: str, interrupted: bool, unfinished: tuple[str, ...]) -> int:
    """The exit code of an exam that ended in ``state`` (also from a ``summary.json``)."""
    if interrupted:
        return EXIT_INTERRUPTED
    if state != "completed":
        return EXIT_FAILED
    return EXIT_INCOMPLETE if unfinished else EXIT_OK
