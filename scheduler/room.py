"""Room files: which devices, over which links, and the room's safety limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.backends import scheme_of
from drivers.config import LocatedValueError, load_model

from .console.settings import WILDCARDS, ConsoleSettings
from .hospital.config import DicomConfig
from .policy import DoseLimits, FaultPolicy

#: Backends whose devices live in this process and wait only on the event loop.
IN_PROCESS_SCHEMES = ("sim", "mock")
#: schemes the reference wire backend serves: its sessions need the room key (docs/security.md)
WIRE_SCHEMES = ("serial", "tcp", "mqtt", "usb")
#: Device roles a room file may give links for (the last two only with wire links).
ROLES = ("carm", "table", "injector", "detector", "effects")
#: Longest scripted operator action (voiding takes minutes; an hour is a typo).
MAX_OPERATOR_DELAY_S = 3600.0


class _Model(BaseModel):
    # NaN passes every range check and infinity every lower bound: neither means anything here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Devices(_Model):
    carm: str = Field(description="link URL, e.g. sim://carm or serial:///dev/ttyUSB0")
    table: str
    injector: str
    detector: str | None = Field(
        default=None,
        description="the C-arm's image link when the C-arm is on a wire link, e.g. usb://1209:f10c",
    )
    effects: str | None = Field(
        default=None,
        description="simulator only: where the simulated patient learns of operator actions",
    )

    @model_validator(mode="after")
    def _schemes(self) -> Devices:
        for role in ROLES:
            link = getattr(self, role)
            if link is None:
                continue
            try:
                scheme_of(link)
            except ValueError as exc:
                raise LocatedValueError((role,), str(exc)) from None
        return self


class InjectorLimits(_Model):
    """The room's envelope for the vascular access in use (policy, not the clinical target)."""

    access: str = "18 G peripheral IV"
    max_flow_ml_s: float = Field(default=5.0, gt=0, le=30)  # 18/20 G: 5 mL/s at 300 psi [S92]
    max_volume_ml: float = Field(default=150.0, gt=0, le=500)
    max_pressure_kpa: float = Field(default=2069.0, gt=0, le=8300)  # 300 psi = 2068.4 kPa


class OperatorConfig(_Model):
    """How prompts are answered: at a terminal, or by a script (simulator, CI)."""

    mode: Literal["terminal", "scripted", "console"] = "terminal"
    #: seconds a scripted operator takes per action (turning a patient takes a while)
    delays_s: dict[str, Annotated[float, Field(ge=0, le=MAX_OPERATOR_DELAY_S)]] = Field(
        default_factory=lambda: {
            "confirm_injection": 5.0,
            "reposition": 40.0,
            "compression_on": 30.0,
            "compression_off": 10.0,
            "void": 240.0,
            "voiding": 5.0,
            "note": 3.0,
        }
    )


class Room(_Model):
    name: str
    institution: str = "fluoroctl"
    station_name: str = Field(default="FLUORO1", max_length=16)
    clock: Literal["real", "virtual"] = Field(
        default="real", description="virtual only for fully in-process simulated rooms"
    )
    devices: Devices
    limits: InjectorLimits = InjectorLimits()
    operator: OperatorConfig = OperatorConfig()
    faults: FaultPolicy = Field(
        default_factory=FaultPolicy, description="reactions to device faults (docs/faults.md)"
    )
    dose: DoseLimits = Field(
        default_factory=DoseLimits, description="fluoroscopy timer and air-kerma levels"
    )
    #: backend options, e.g. the simulated patient scenario
    options: dict[str, str | float | int | bool] = {}
    broker: str | None = Field(
        default=None,
        description="MQTT broker for mqtt:/// links without a host: mqtt://HOST[:PORT], or "
        "mqtt+tls://HOST[:PORT]?ca=PATH&cert=PATH&key=PATH&username=NAME&password_file=PATH "
        "(paths, never a password)",
    )
    dicom: DicomConfig = Field(
        default_factory=DicomConfig,
        description="the room in the hospital's DICOM network: AE title, UID root, PACS "
        "destinations, worklist, MPPS (docs/dicom.md)",
    )
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings,
        description="where the operator console listens (docs/console.md); loopback by default",
    )
    procedures: dict[str, str] = Field(
        default_factory=dict,
        description="requested procedure code (from the worklist) -> protocol to run",
    )
    key_file: str | None = Field(
        default=None,
        description="the room secret for authenticated wire sessions (fluoroctl keys new "
        "ROOM creates it, mode 0600); needed when any device is on a wire link. Relative "
        "paths: from the working directory, as endpoints_file",
    )
    endpoints_file: str | None = Field(
        default=None,
        description="JSON file written by `fluoroctl sim serve`; ${name} in link URLs is "
        "replaced by its entry (relative paths: from the working directory)",
    )

    @model_validator(mode="after")
    def _virtual_needs_sim(self) -> Room:
        if self.clock == "virtual":
            for role in ("carm", "table", "injector"):
                if scheme_of(getattr(self.devices, role)) not in IN_PROCESS_SCHEMES:
                    raise LocatedValueError(
                        ("clock",),
                        f"virtual time needs in-process simulated devices; {role} is "
                        f"{getattr(self.devices, role)}",
                    )
        return self

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            from drivers.links._mqtt_url import parse_broker_url  # no aiomqtt import

            parse_broker_url(value)  # a ValueError names the problem
        return value

    @model_validator(mode="after")
    def _wire_links_need_a_key(self) -> Room:
        if self.key_file is None:
            for role, link in self.links.items():
                if scheme_of(link).split("+", 1)[0] in WIRE_SCHEMES:
                    raise LocatedValueError(
                        ("devices", role),
                        f"{link} is a wire link: the room needs key_file, the secret its "
                        "sessions are authenticated with (create one: fluoroctl keys new ROOM)",
                    )
        return self

    @model_validator(mode="after")
    def _network_console_needs_https_and_a_key(self) -> Room:
        console = self.console
        if console.loopback:
            return self
        if not console.tls:
            raise LocatedValueError(
                ("console", "host"),
                f"{console.host} is not loopback: a console other hosts reach needs HTTPS "
                "(console.tls_cert and console.tls_key; fluoroctl keys console-cert ROOM)",
            )
        if self.key_file is None:
            raise LocatedValueError(
                ("console", "host"),
                f"{console.host} is not loopback: the console's login password comes from "
                "the room key, and the room has no key_file (fluoroctl keys new ROOM)",
            )
        if console.host in WILDCARDS and not console.server_names:
            raise LocatedValueError(
                ("console", "server_names"),
                f"the console binds every address ({console.host or '*'}): list the names "
                "browsers reach it by in console.server_names",
            )
        return self

    @property
    def links(self) -> dict[str, str]:
        """Role → link URL for every device the room names."""
        return {role: link for role in ROLES if (link := getattr(self.devices, role)) is not None}


def load_room(path: Path | str) -> Room:
    return load_model(path, Room, root_key="room")
