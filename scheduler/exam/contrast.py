"""The contrast ledger: what the scheduler commanded against what the injector reports.

An injector that keeps since-reset counters (``delivered_total_ml``, ``injections_started``
in its status and events) lets the host see any injection it did not command: someone
pressing start at the injector, a second injection on a link the host does not control, a
device that gives more than its program. The ledger takes the counters at the exam's start
as its baseline (without the current arm's own volume and start, which a resumed exam owns),
adds each start the scheduler sends, and compares every report with that. For an injector
without counters it falls back to what one arm shows: a start nobody sent, or more volume
than the programs commanded.

The ledger only decides; :func:`scheduler.exam.faults.uncommanded_injection` reacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers import InjectorState, InjectorStatus

#: volume the injector may deliver beyond what was commanded before it counts as
#: uncommanded: its accuracy (≤ 1 mL/s deviation at 5 mL/s, mostly in the ramps [S96])
#: and the rounding of reported figures
TOLERANCE_ML = 0.5
TOLERANCE_FRACTION = 0.02


@dataclass
class ContrastLedger:
    commanded_ml: float = 0.0
    commanded_starts: int = 0
    #: the device's counters before this exam's arm (None: not reported, or not read)
    base_total_ml: float | None = None
    base_starts: int | None = None
    #: the device's counters as last reported
    total_ml: float | None = None
    starts: int | None = None
    #: the current arm's delivered volume as last reported
    arm_ml: float = 0.0
    #: why the exam's contrast was found uncommanded (once found; reported once)
    evidence: str | None = None

    def baseline(self, status: InjectorStatus) -> None:
        """The counters at the exam's start, less the current arm's own volume and start."""
        self.arm_ml = status.delivered_ml
        if status.delivered_total_ml is None:
            return
        self.total_ml = status.delivered_total_ml
        self.base_total_ml = status.delivered_total_ml - status.delivered_ml
        started = status.started_at_s is not None or status.state in (
            InjectorState.INJECTING,
            InjectorState.HOLDING,
        )
        if status.injections_started is not None:
            self.starts = status.injections_started
            self.base_starts = status.injections_started - (1 if started else 0)

    def command(self, volume_ml: float) -> None:
        """The scheduler sends a start for a program of ``volume_ml``."""
        self.commanded_ml += volume_ml
        self.commanded_starts += 1

    @property
    def device_ml(self) -> float | None:
        """Contrast the injector reports delivering in this exam (None: no counters)."""
        if self.total_ml is None or self.base_total_ml is None:
            return None
        return max(self.total_ml - self.base_total_ml, 0.0)

    @property
    def device_starts(self) -> int | None:
        if self.starts is None or self.base_starts is None:
            return None
        return self.starts - self.base_starts

    @property
    def uncommanded_ml(self) -> float | None:
        """Reported beyond what was commanded (0 when within it; None without counters)."""
        device = self.device_ml
        return None if device is None else max(device - self.commanded_ml, 0.0)

    def observe_status(self, status: InjectorStatus) -> str | None:
        """A status the injector gave; returns the evidence when it shows, for the first
        time, contrast the scheduler did not command."""
        return self._observe(
            status.delivered_total_ml,
            status.injections_started,
            status.delivered_ml,
            started=False,
        )

    def observe_event(self, kind: str, data: Mapping[str, object]) -> str | None:
        """An event the injector published (see :meth:`observe_status`)."""
        total = data.get("delivered_total_ml")
        starts = data.get("injections_started")
        arm = data.get("delivered_ml")
        return self._observe(
            _number(total),
            starts if isinstance(starts, int) and not isinstance(starts, bool) else None,
            _number(arm),
            started=kind == "injection_started",
        )

    def _observe(
        self, total: float | None, starts: int | None, arm: float | None, *, started: bool
    ) -> str | None:
        if total is not None:
            self.total_ml = total
        if starts is not None:
            self.starts = starts
        if arm is not None:
            self.arm_ml = arm
        if self.evidence is not None:
            return None
        self.evidence = self._uncommanded(started)
        return self.evidence

    def _uncommanded(self, started: bool) -> str | None:
        allowed = self.commanded_ml * (1 + TOLERANCE_FRACTION) + TOLERANCE_ML
        commanded = f"the scheduler commanded {self._commanded()}"
        n = self.device_starts
        if n is not None and n > self.commanded_starts:
            return f"the injector reports {n} injection(s) started in this exam; {commanded}"
        device = self.device_ml
        if device is not None and device > allowed:
            return f"the injector reports {device:.1f} mL delivered in this exam; {commanded}"
        if n is None and started and self.commanded_starts == 0:
            return f"the injector reports an injection start; {commanded}"
        if device is None and self.arm_ml > allowed:
            return f"the injector reports {self.arm_ml:.1f} mL delivered; {commanded}"
        return None

    def _commanded(self) -> str:
        if not self.commanded_starts:
            return "no injection"
        return f"{self.commanded_starts} injection(s), {self.commanded_ml:g} mL"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
