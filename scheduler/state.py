"""The exam's run state: an explicit transition table, a status snapshot, an event per change.

::

    idle ──start──▶ preparing ──ready──▶ running ◀──resume── paused
                        │                  │ │ └──pause──▶   │
                        │                  │ └──▶ completed  │
                        └──────────────────┴────▶ aborted ◀──┤
                                                  faulted ◀──┘

``aborted`` is an operator's or an interlock's decision; ``faulted`` is a device fault whose
policy ends the exam. Both end with every device in its safe state. A transition that is not
in :data:`TRANSITIONS` is refused with :class:`IllegalTransition`, naming why.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class RunState(enum.StrEnum):
    IDLE = "idle"
    PREPARING = "preparing"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAULTED = "faulted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunState.COMPLETED, RunState.ABORTED, RunState.FAULTED})

#: from-state → the states it may go to
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.IDLE: frozenset({RunState.PREPARING}),
    RunState.PREPARING: frozenset({RunState.RUNNING, RunState.ABORTED, RunState.FAULTED}),
    RunState.RUNNING: frozenset(
        {RunState.PAUSED, RunState.COMPLETED, RunState.ABORTED, RunState.FAULTED}
    ),
    RunState.PAUSED: frozenset({RunState.RUNNING, RunState.ABORTED, RunState.FAULTED}),
    RunState.COMPLETED: frozenset(),
    RunState.ABORTED: frozenset(),
    RunState.FAULTED: frozenset(),
}


class IllegalTransition(Exception):
    """A state change the table does not allow; ``reason`` says why in words."""

    def __init__(self, current: RunState, target: RunState, reason: str) -> None:
        super().__init__(f"cannot go from {current.value} to {target.value}: {reason}")
        self.current = current
        self.target = target
        self.reason = reason


def _why_not(current: RunState, target: RunState) -> str:
    if current.terminal:
        return f"the exam already ended ({current.value})"
    if target is RunState.PAUSED and current is RunState.PAUSED:
        return "the exam is already paused"
    if target is RunState.PAUSED:
        return "only a running exam can be paused"
    if target is RunState.RUNNING and current is RunState.RUNNING:
        return "the exam is running, not paused: nothing to resume"
    if target is RunState.RUNNING and current is RunState.IDLE:
        return "the exam has not been prepared (start it first)"
    if target is RunState.COMPLETED:
        return "only a running exam can complete (resume a paused one first)"
    if target is RunState.PREPARING:
        return "the exam was already started"
    return "not in the transition table"


@dataclass(frozen=True, slots=True)
class Transition:
    source: RunState
    target: RunState
    reason: str
    t_s: float


class StateMachine:
    """Holds the current state; every change goes through :meth:`go` and is announced."""

    def __init__(
        self,
        on_transition: Callable[[Transition], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._state = RunState.IDLE
        self._on_transition = on_transition
        self._clock = clock or (lambda: 0.0)
        self.history: list[Transition] = []

    @property
    def state(self) -> RunState:
        return self._state

    def can(self, target: RunState) -> bool:
        return target in TRANSITIONS[self._state]

    def go(self, target: RunState, reason: str = "") -> Transition:
        if target not in TRANSITIONS[self._state]:
            raise IllegalTransition(self._state, target, _why_not(self._state, target))
        transition = Transition(self._state, target, reason, self._clock())
        self._state = target
        self.history.append(transition)
        if self._on_transition is not None:
            self._on_transition(transition)
        return transition


@dataclass(frozen=True, slots=True)
class ExamStatus:
    """A consistent snapshot of where the exam is (for displays, telemetry and tests)."""

    state: RunState
    current_step: str | None
    next_step: str | None
    next_deadline_s: float | None
    injection_start_s: float | None
    contrast_delivered_ml: float
    reference_air_kerma_mgy: float
    dap_gy_cm2: float
    fluoro_time_s: float
    images: int
    devices: dict[str, str] = field(default_factory=dict)  # role → ok | faulted: … | lost: …
    faults: tuple[str, ...] = ()
