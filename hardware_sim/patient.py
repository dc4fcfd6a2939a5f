"""The simulated patient: contrast kinetics, position and the line contrast flows through."""

from __future__ import annotations

from drivers import Clock

from .line import line_resistance_kpa_s_ml
from .physics import ContrastKinetics, KineticsParams, PatientBuild, Phantom
from .scenario import Scenario

POSITIONS = ("supine", "prone", "lpo", "rpo")


class SimPatient:
    """State of the simulated patient, advanced lazily on the shared clock.

    Contrast enters through :meth:`infuse_until`, called by the simulated injector with the
    iodine it actually delivered; everything that looks at the patient first brings the
    kinetics up to the present.
    """

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self.scenario = scenario
        self._clock = clock
        self._t0 = clock.now()
        k = scenario.kidneys
        self.kinetics = ContrastKinetics(
            KineticsParams(
                weight_kg=scenario.build.weight_kg,
                gfr_left_ml_min=k.gfr_left_ml_min,
                gfr_right_ml_min=k.gfr_right_ml_min,
                obstructed_left=k.obstructed_left,
                obstructed_right=k.obstructed_right,
                hydration=scenario.hydration,
                bladder_start_ml=scenario.bladder_start_ml,
            )
        )
        self.phantom = Phantom(
            PatientBuild(
                height_cm=scenario.build.height_cm,
                weight_kg=scenario.build.weight_kg,
                ap_thickness_cm=scenario.build.ap_thickness_cm,
                seed=scenario.seed,
            )
        )
        self.position = "supine"
        self.compression = False
        self.line_resistance_kpa_s_ml = line_resistance_kpa_s_ml(scenario)

    def model_time(self, t: float | None = None) -> float:
        return (self._clock.now() if t is None else t) - self._t0

    def advance(self) -> None:
        self.kinetics.advance_to(self.model_time())

    def infuse_until(self, t: float, iodine_mg: float) -> None:
        """``iodine_mg`` entered the vein between the model's present and loop time ``t``."""
        target = self.model_time(t)
        span = target - self.kinetics.time_s
        if span <= 1e-9:
            # Nothing to spread it over (an observer advanced us to t already): bolus it.
            self.kinetics.advance(1e-3, iodine_mg / 1e-3)
            return
        self.kinetics.advance_to(target, iodine_mg / span)

    def set_position(self, position: str) -> None:
        if position not in POSITIONS:
            raise ValueError(f"unknown patient position {position!r}; expected one of {POSITIONS}")
        self.advance()
        self.position = position

    def set_compression(self, on: bool) -> None:
        self.advance()
        self.compression = on
        self.kinetics.set_compression(on)

    def void(self) -> float:
        self.advance()
        return self.kinetics.void()
