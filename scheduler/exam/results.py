"""What an exam did, step by step, and how it ended.

Times are loop seconds (virtual under the simulator):

* ``planned_s``: the step's time point, injection start + ``at`` (timed steps only);
* ``commanded_s``: when the scheduler sent the step's command (the exposure, the fluoroscopy
  run or the sweep, the injection start) or showed its prompt;
* ``device_s``: when it *actually* happened, as the device reported it (the first frame's
  acquisition time, the injector's reported start) or, for a prompt, when the operator
  answered. "Actual" means this time everywhere (summary, display).

Lateness is about time points the patient's images depend on, nothing else: a prompt's
confirmation delay is the operator's time, not lateness.

* ``trigger``: how an acquisition's command went out: ``timed`` (armed on the C-arm, which
  brings the beam on at the time point by its own clock: the *commanded* time is that time
  point), ``early`` (sent the C-arm's declared exposure latency before the time point) or
  ``immediate`` (sent at the time point); ``command_due_s`` when it was due (the time point,
  or the time point minus the latency), ``sent_s`` when the command left;

* ``lateness_s`` = commanded - due (commanded - planned without a trigger), for timed
  acquisitions: the scheduler's own timing;
* ``device_lateness_s`` = actual - planned, for timed acquisitions; for the injection start,
  actual - commanded (how long the injector took to report the start it was sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers import InjectorStatus

from ..records import CaptureRecord
from ..recovery import PriorCapture

#: step statuses that are final (a resumed exam does not run these steps again)
FINAL_STATUSES = frozenset({"done", "late", "missed", "failed", "skipped"})
#: step types that acquire images (their time points are what lateness is about)
ACQUISITIONS = frozenset({"capture", "fluoro", "tomo"})


class ExamAborted(Exception):
    """The exam ends (aborted): an operator's decision, an interlock, a refusal."""


class ExamFaulted(Exception):
    """A device fault whose policy ends the exam."""


@dataclass
class StepResult:
    id: str
    label: str
    type: str
    status: str = "pending"  # pending | running | done | late | missed | failed | skipped
    planned_after_injection_s: float | None = None
    planned_s: float | None = None
    commanded_s: float | None = None
    device_s: float | None = None
    #: timed | early | immediate (acquisitions); None for other steps
    trigger: str | None = None
    command_due_s: float | None = None
    sent_s: float | None = None
    detail: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def lateness_s(self) -> float | None:
        """The scheduler's lateness for a timed acquisition (module docstring); else None."""
        if self.type not in ACQUISITIONS or self.planned_s is None or self.commanded_s is None:
            return None
        due = self.command_due_s if self.command_due_s is not None else self.planned_s
        return self.commanded_s - due

    @property
    def device_lateness_s(self) -> float | None:
        """Actual - planned for a timed acquisition; actual - commanded for the injection."""
        if self.device_s is None:
            return None
        if self.type in ACQUISITIONS and self.planned_s is not None:
            return self.device_s - self.planned_s
        if self.type == "inject" and self.commanded_s is not None:
            return self.device_s - self.commanded_s
        return None


@dataclass
class ExamResult:
    state: str  # completed | aborted | faulted
    reason: str
    steps: list[StepResult]
    records: list[CaptureRecord]
    injection_start_s: float | None
    injector: InjectorStatus | None
    started_s: float
    ended_s: float
    abort_confirmations: dict[str, str] = field(default_factory=dict)
    #: images acquired before a restart (resumed exams), already on disk
    prior: list[PriorCapture] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    fluoro_time_s: float = 0.0
    #: contrast the injector reported delivering (its final or stop report; else its last;
    #: its since-reset counter for this exam when it keeps one, which wins)
    contrast_delivered_ml: float = 0.0
    #: the volume of the programs the scheduler started
    contrast_commanded_ml: float = 0.0
    #: what the injector's counter reports beyond that (None: it keeps no counter)
    contrast_uncommanded_ml: float | None = None
    #: the run was interrupted (Ctrl-C, a cancelled task): it aborted, then re-raised
    interrupted: bool = False

    @property
    def unfinished_steps(self) -> list[str]:
        """Steps that ended missed or failed."""
        return [s.id for s in self.steps if s.status in ("missed", "failed")]
