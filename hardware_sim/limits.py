"""The simulated devices' own hard limits: what the injector and the generator refuse whatever
the host says (defence in depth, issue 12).

The host clamps every command to the *room's* limits (scheduler/safety.py); these are the
*devices'* limits, held by the devices themselves, so a host bug or an attacker on a link
cannot exceed them. They are the device's configuration, not the host's: the simulator reads
them from the file named by the ``device_limits`` option of the room's simulator options
(a path, relative to the room file), in-process and under ``fluoroctl sim serve`` alike::

    room:
      options:
        patient: normal
        device_limits: device-limits.yaml   # beside the room file

    # device-limits.yaml
    device_limits:
      injector: {max_volume_ml: 150, max_flow_ml_s: 5, max_pressure_kpa: 2069}
      carm: {max_kv: 125, max_mas: 100}

Without the option the defaults below apply: a CT/angio-class power injector and an R/F
generator at datasheet level. A bad file is refused in one line naming file, line and field
(:class:`drivers.config.ConfigError`). Refusals raise
:class:`drivers.errors.DeviceLimitExceeded` naming the limit; the device's state is left as
it was (nothing armed, nothing injected, no exposure).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers import FluoroRequest, InjectionProgram, Technique
from drivers.config import ConfigError, load_model
from drivers.errors import DeviceLimitExceeded

#: the simulator option naming the device-limits file
OPTION = "device_limits"
KPA_PER_PSI = 6.894757


class _Model(BaseModel):
    # NaN passes every range check and infinity every lower bound: neither means anything here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InjectorDeviceLimits(_Model):
    """A power injector's hard limits (one syringe head).

    Defaults: 200 mL syringe (CT/angio syringes are 150–200 mL [S87]); 10 mL/s (CT-class
    injectors reach 10 mL/s [S89]); 325 psi = 2241 kPa (CT-class injectors work above 300 psi
    [S89]; a power-injectable port's 325 psi rating [S95]; the MEDRAD Salient's programmable
    limit is 100–300 psi [S91]). A room configures them down (e.g. to its access's 5 mL/s).
    """

    max_volume_ml: float = Field(
        default=200.0, gt=0, le=500, description="one armed program (one syringe load)"
    )
    max_total_volume_ml: float | None = Field(
        default=None,
        gt=0,
        le=2000,
        description="everything delivered since the device was reset, over every arm "
        "(None: no such limit)",
    )
    max_flow_ml_s: float = Field(default=10.0, gt=0, le=30, description="any phase's flow")
    max_pressure_kpa: float = Field(
        default=round(325 * KPA_PER_PSI, 1), gt=0, le=8300, description="programmed limit"
    )


class GeneratorLimits(_Model):
    """An R/F generator's hard limits per exposure and per fluoroscopy run.

    Defaults: static 40–150 kV, fluoroscopy 40–125 kV at 0.5–4 mA [S29]; 800 mA (radiographs
    use 600–1000 mA [S4]; 800 mA is a common 80 kW R/F tube-generator rating); 600 mAs and
    6 s per exposure, the AEC back-up limits of 21 CFR 1020.31(f)(4) (a GE Definium 5000 stops
    at 512 mAs / 2 s); 5 mA mean tube current in fluoroscopy.
    """

    min_kv: float = Field(default=40.0, ge=20, le=150)
    max_kv: float = Field(default=150.0, ge=20, le=150)
    max_ma: float = Field(default=800.0, gt=0, le=1250)
    max_exposure_ms: float = Field(default=6000.0, gt=0, le=6300)
    max_mas: float = Field(default=600.0, gt=0, le=2000, description="dose per exposure")
    fluoro_max_kv: float = Field(default=125.0, ge=20, le=150)
    fluoro_max_mean_ma: float = Field(
        default=5.0, gt=0, le=50, description="pulse current × duty cycle"
    )

    @model_validator(mode="after")
    def _ordered(self) -> GeneratorLimits:
        if self.min_kv > self.max_kv:
            raise ValueError(f"min_kv {self.min_kv:g} is above max_kv {self.max_kv:g}")
        return self


class DeviceLimits(_Model):
    injector: InjectorDeviceLimits = InjectorDeviceLimits()
    carm: GeneratorLimits = GeneratorLimits()


def device_limits(options: Mapping[str, object], base_dir: Path | None) -> DeviceLimits:
    """The limits the simulator's ``device_limits`` option names (defaults without it).

    The option is a path (relative to ``base_dir``, the room file's folder) to a YAML file
    with a top-level ``device_limits:`` mapping; a mapping given directly (the Python API,
    tests) is validated the same way. A bad file or mapping raises :class:`ConfigError`.
    """
    value = options.get(OPTION)
    if value is None or value == "":
        return DeviceLimits()
    if isinstance(value, Mapping):
        try:
            return DeviceLimits.model_validate(value)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in (OPTION, *err["loc"]))
            raise ConfigError("simulator options", None, field, err["msg"]) from None
    if not isinstance(value, str):
        raise ConfigError(
            "simulator options", None, OPTION, f"a path to a YAML file, got {value!r}"
        )
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return load_model(path, DeviceLimits, root_key=OPTION)


# -- checks (each raises DeviceLimitExceeded naming the limit) -------------------------------
def _refuse(device: str, operation: str, limit: str, value: float, bound: float, unit: str) -> None:
    raise DeviceLimitExceeded(device, operation, limit, value, bound, unit)


def check_program(
    limits: InjectorDeviceLimits,
    program: InjectionProgram,
    device: str,
    operation: str = "arm",
    delivered_total_ml: float = 0.0,
) -> None:
    """Refuse a program beyond the injector's own volume, flow or pressure limits."""
    if program.volume_ml > limits.max_volume_ml:
        _refuse(device, operation, "max_volume_ml", program.volume_ml, limits.max_volume_ml, "mL")
    total = limits.max_total_volume_ml
    if total is not None and delivered_total_ml + program.volume_ml > total:
        _refuse(
            device,
            operation,
            "max_total_volume_ml",
            delivered_total_ml + program.volume_ml,
            total,
            "mL",
        )
    if program.max_flow_ml_s > limits.max_flow_ml_s:
        _refuse(
            device, operation, "max_flow_ml_s", program.max_flow_ml_s, limits.max_flow_ml_s, "mL/s"
        )
    if program.pressure_limit_kpa > limits.max_pressure_kpa:
        _refuse(
            device,
            operation,
            "max_pressure_kpa",
            program.pressure_limit_kpa,
            limits.max_pressure_kpa,
            "kPa",
        )


def check_technique(
    limits: GeneratorLimits, technique: Technique, device: str, operation: str
) -> None:
    """Refuse a radiographic (or tomosynthesis sweep) technique beyond the generator's limits."""
    if technique.kv < limits.min_kv:
        raise DeviceLimitExceeded(
            device, operation, "min_kv", technique.kv, limits.min_kv, "kV", below=True
        )
    if technique.kv > limits.max_kv:
        _refuse(device, operation, "max_kv", technique.kv, limits.max_kv, "kV")
    if technique.ma > limits.max_ma:
        _refuse(device, operation, "max_ma", technique.ma, limits.max_ma, "mA")
    if technique.exposure_ms > limits.max_exposure_ms:
        _refuse(
            device,
            operation,
            "max_exposure_ms",
            technique.exposure_ms,
            limits.max_exposure_ms,
            "ms",
        )
    if technique.mas > limits.max_mas:
        _refuse(device, operation, "max_mas", technique.mas, limits.max_mas, "mAs")


def check_fluoro(limits: GeneratorLimits, request: FluoroRequest, device: str) -> None:
    """Refuse a fluoroscopy run beyond the generator's fluoroscopy limits."""
    technique = request.technique
    if technique.kv < limits.min_kv:
        raise DeviceLimitExceeded(
            device, "fluoro", "min_kv", technique.kv, limits.min_kv, "kV", below=True
        )
    if technique.kv > limits.fluoro_max_kv:
        _refuse(device, "fluoro", "fluoro_max_kv", technique.kv, limits.fluoro_max_kv, "kV")
    if technique.ma > limits.max_ma:
        _refuse(device, "fluoro", "max_ma", technique.ma, limits.max_ma, "mA")
    # pulses longer than their period would be continuous beam: the duty cycle caps at 1
    duty = min(1.0, technique.exposure_ms / 1000.0 * request.pulse_rate_hz)
    mean_ma = technique.ma * duty
    if mean_ma > limits.fluoro_max_mean_ma:
        _refuse(device, "fluoro", "fluoro_max_mean_ma", mean_ma, limits.fluoro_max_mean_ma, "mA")
