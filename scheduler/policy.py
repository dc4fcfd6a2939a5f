"""Room-file policy sections: how the exam reacts to device faults, and the dose limits.

Both have defaults, so a room file needs neither section; a protocol may override fault
reactions (``faults:`` in the protocol, merged over the room's field by field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Decision = Literal["continue", "abort"]


def _injector_defaults() -> dict[str, Decision]:
    return {
        "over_pressure": "continue",
        "air_detected": "continue",
        "occlusion": "continue",
        "motor_stall": "continue",
        "volume_limit": "continue",
        # contrast the scheduler did not command (a start at the injector, a second
        # injection): a patient-safety event, so the exam ends unless the room says otherwise
        "uncommanded_injection": "abort",
    }


def _link_defaults() -> dict[str, Decision]:
    return {"injector": "continue", "carm": "abort", "table": "abort"}


class _Model(BaseModel):
    # NaN passes every range check and infinity every lower bound: neither means anything here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FaultPolicy(_Model):
    """The reaction to each device fault (docs/faults.md has the table)."""

    injector: dict[str, Decision] = Field(
        default_factory=_injector_defaults,
        description="injector fault → exam decision once the injection has started; the "
        "injection itself is always stopped (the injector halts; the scheduler confirms). "
        "A fault before the start ends the exam: timed films need a confirmed start.",
    )
    generator_retries: int = Field(
        default=2,
        ge=0,
        le=5,
        description="re-tries of an acquisition whose generator faulted *before beam-on*, "
        "while still inside the step's tolerance window; never after an ambiguous outcome",
    )
    generator_retry_delay_s: float = Field(default=0.25, ge=0.0, le=10.0)
    before_beam_faults: list[str] = Field(
        default_factory=lambda: ["generator"],
        description="DeviceFault codes from an acquisition that mean no exposure was made",
    )
    dropped_radiograph: Literal["missed", "retake"] = Field(
        default="missed",
        description="a radiograph exposed but lost by the detector: record it missed, or "
        "retake it inside the tolerance window (a new exposure: more dose)",
    )
    table_stall_retries: int = Field(
        default=1, ge=0, le=3, description="re-tries of a stalled table move, then the exam ends"
    )
    link_lost: dict[str, Decision] = Field(
        default_factory=_link_defaults,
        description="device role → exam decision when its link is lost or it stops answering "
        "(the injector only after the injection started: it runs its program on its own)",
    )


class DoseLimits(_Model):
    """Fluoroscopy timer, air-kerma notification levels and stops (21 CFR 1020.32, NCRP 168).

    Fluoroscopy time is the regulator's *fluoroscopic irradiation time* (21 CFR 1020.30(b)):
    how long the fluoroscopy was switched on (a pulsed run counts its whole duration, gaps
    between pulses included), not the sum of pulse widths. Every level crossed is journaled
    (``fluoro_timer_alert``, ``air_kerma_notification``) and shown by the progress display.
    """

    fluoro_alert_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="audible alert at each passage of this much fluoroscopy time: 5 min in "
        "21 CFR 1020.32(h)(2)",
    )
    max_fluoro_time_s: float = Field(
        default=1800.0,
        gt=0,
        description="cumulative fluoroscopy time beyond which fluoro is refused",
    )
    max_air_kerma_rate_mgy_min: float = Field(
        default=88.0, gt=0, description="estimated fluoro air-kerma rate limit (1020.32(e))"
    )
    air_kerma_notify_mgy: float = Field(
        default=3000.0,
        gt=0,
        description="first reference air kerma notification to the operator (NCRP 168 "
        "practice: 3 Gy, then every step)",
    )
    air_kerma_notify_step_mgy: float = Field(
        default=1000.0, gt=0, description="further notifications every this much"
    )
    substantial_dose_level_mgy: float | None = Field(
        default=5000.0,
        gt=0,
        description="reference air kerma of the substantial radiation dose level (NCRP 168 "
        "SRDL: 5 Gy): journaled and shown once crossed, the patient to be followed up; "
        "None: not tracked",
    )
    max_reference_air_kerma_mgy: float | None = Field(
        default=None, gt=0, description="refuse further exposures beyond this (None: no stop)"
    )
