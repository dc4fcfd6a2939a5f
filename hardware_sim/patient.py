"""The simulated patient: contrast kinetics, position and the line contrast flows through."""

from __future__ import annotations

from drivers import Clock

from .line import line_resistance_kpa_s_ml
from .physics import ContrastKinetics, Finding, KineticsParams, PatientBuild, Phantom
from .scenario import Scenario, obstructed

POSITIONS = ("supine", "prone", "lpo", "rpo")
ADULT_KIDNEY_ML = 100.0  # KineticsParams.kidney_volume_ml for the adult phantom kidney


def phantom_build(scenario: Scenario) -> PatientBuild:
    """The phantom a scenario describes: build, kidney variant, findings, sex."""
    return PatientBuild(
        height_cm=scenario.build.height_cm,
        weight_kg=scenario.build.weight_kg,
        ap_thickness_cm=scenario.build.ap_thickness_cm,
        seed=scenario.seed,
        findings=tuple(
            Finding(
                kind=f.kind,
                centre_mm=f.centre_mm or (0.0, 0.0, 0.0),
                diameter_mm=f.diameter_mm,
                side=f.side,
                site=f.site,
            )
            for f in scenario.findings
        ),
        kidney_variant=scenario.kidneys.variant,
        sex=scenario.sex,
    )


def kinetics_params(scenario: Scenario, phantom: Phantom) -> KineticsParams:
    """The contrast kinetics of a scenario; a child's kidneys hold the volume of the
    phantom's (smaller) kidneys, so the same tubular iodine makes the same density."""
    k = scenario.kidneys
    size = phantom.scale * phantom.kidney_scale
    defaults = KineticsParams()
    return KineticsParams(
        weight_kg=scenario.build.weight_kg,
        gfr_left_ml_min=k.gfr_left_ml_min,
        gfr_right_ml_min=k.gfr_right_ml_min,
        obstructed_left=obstructed(scenario, "left"),
        obstructed_right=obstructed(scenario, "right"),
        hydration=scenario.hydration,
        bladder_start_ml=scenario.bladder_start_ml,
        kidney_volume_ml=ADULT_KIDNEY_ML * size**3 if size != 1.0 else defaults.kidney_volume_ml,
        tubular_transit_s=k.tubular_transit_s,
        concentrating_ability=k.concentrating_ability,
        renal_plasma_fraction=defaults.renal_plasma_fraction * k.perfusion,
        void_residual_ml=scenario.voiding.residual_ml,
        void_max_flow_ml_s=scenario.voiding.max_flow_ml_s,
    )


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
        self.phantom = Phantom(phantom_build(scenario))
        self.kinetics = ContrastKinetics(kinetics_params(scenario, self.phantom))
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

    def start_voiding(self) -> float:
        """The patient starts to void on the table; returns the volume to be voided (mL)."""
        self.advance()
        return self.kinetics.start_voiding()

    def kidney_midplane_mm(self) -> float:
        """Height of the kidneys' mid-plane above the table top (supine)."""
        return self.phantom.kidney_midplane_mm()
