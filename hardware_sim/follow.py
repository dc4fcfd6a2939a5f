"""The simulated patient receiving contrast from an injector the simulator does not own.

In a mixed room (simulated C-arm and table, a real or vendor injector) the patient's contrast
kinetics follow what the injector *reports*: every event carrying ``delivered_ml`` (the
``status`` broadcasts, ``injection_started``, and the end events ``completed``/``stopped``/
``faulted``) infuses the newly delivered volume, spread over the time since the previous
report, at the event's device time. The iodine concentration comes from the ``armed`` event's
``concentration_mg_ml`` when the driver reports it, else the contract's default (300 mg/ml).
"""

from __future__ import annotations

from collections.abc import Callable

from drivers import DeviceEvent, InjectionPhase, InjectionProgram, Injector

from .patient import SimPatient

#: The contract's default concentration, for drivers whose ``armed`` event does not say.
DEFAULT_CONCENTRATION_MG_ML: float = InjectionProgram(
    (InjectionPhase(1.0, 1.0),), 1000.0
).concentration_mg_ml


class InjectorFollower:
    """Feeds ``patient`` from ``injector``'s events until :meth:`close`."""

    def __init__(self, injector: Injector, patient: SimPatient) -> None:
        self._patient = patient
        self._delivered_ml = 0.0
        self._concentration = DEFAULT_CONCENTRATION_MG_ML
        #: iodine given so far (mg), for the exam record and tests
        self.iodine_mg = 0.0
        self._unsubscribe: Callable[[], None] = injector.subscribe(self._on_event)

    def _on_event(self, event: DeviceEvent) -> None:
        data = event.data
        if event.kind == "armed":
            conc = data.get("concentration_mg_ml")
            if isinstance(conc, int | float):
                self._concentration = float(conc)
            self._delivered_ml = 0.0  # a new program: its volume counts from zero
            return
        delivered = data.get("delivered_ml")
        if not isinstance(delivered, int | float) or isinstance(delivered, bool):
            return
        delta = float(delivered) - self._delivered_ml
        if delta <= 0:
            return
        self._delivered_ml = float(delivered)
        mg = delta * self._concentration
        self.iodine_mg += mg
        self._patient.infuse_until(event.device_time_s, mg)

    def close(self) -> None:
        self._unsubscribe()
