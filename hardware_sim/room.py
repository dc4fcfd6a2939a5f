"""The ``sim://`` backend: a whole simulated room sharing one patient and one clock."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from drivers import DeviceEvent, Injector
from drivers.backends import DeviceSet, RoomDevices, RoomRequest
from drivers.config import ConfigError

from .carm import SimCArm
from .faults import FaultInjector, FaultSpecError, parse_faults
from .follow import InjectorFollower
from .injector import SimInjector
from .limits import device_limits
from .panel import PANEL_MODES
from .patient import SimPatient
from .persist import STATE_FILE, RoomPersistence, restore_room
from .physics.kinetics import ContrastKinetics
from .scenario import load_scenario, resolve_scenario_path
from .table import SimTable


class SimEffects:
    """Applies the operator's confirmed actions to the simulated patient."""

    def __init__(self, room: SimRoom) -> None:
        self._room = room

    async def apply(self, action: str, position: str | None = None) -> None:
        patient = self._room.patient
        if action == "reposition" and position is not None:
            patient.set_position(position)
        elif action == "compression_on":
            patient.set_compression(True)
        elif action == "compression_off":
            patient.set_compression(False)
        elif action == "voiding":
            to_void = patient.start_voiding()
            self._room.table._publish(
                DeviceEvent(
                    "patient", "voiding", self._room.clock.now(), {"to_void_ml": round(to_void, 1)}
                )
            )
        elif action == "void":
            voided = patient.void()
            self._room.table._publish(
                DeviceEvent(
                    "patient", "voided", self._room.clock.now(), {"voided_ml": round(voided, 1)}
                )
            )
        self._room.persistence.save()

    async def contrast_mg_ml(self) -> dict[str, float]:
        """Every compartment's iodine now, from a copy of the kinetics brought up to the
        present: looking must not change the integration steps the exposures see."""
        patient = self._room.patient
        live = patient.kinetics
        copy = ContrastKinetics.restore(live.params, live.snapshot())
        copy.advance_to(patient.model_time())
        return copy.concentrations_mg_ml()


class SimRoom:
    def __init__(self, request: RoomRequest) -> None:
        self.clock = request.clock
        name = str(request.options.get("patient", "normal"))
        path = resolve_scenario_path(name, request.base_dir)
        self.scenario = load_scenario(path)
        self.scenario_path = path
        self.patient = SimPatient(self.scenario, self.clock)
        #: the devices' own hard limits (the ``device_limits`` option; defaults without it)
        self.limits = device_limits(request.options, request.base_dir)
        names = {role: urlsplit(link).netloc or role for role, link in request.links.items()}
        for role in ("carm", "table", "injector"):
            names.setdefault(role, role)
        self.table = SimTable(names["table"], self.clock)
        self.injector = SimInjector(
            names["injector"], self.clock, self.patient, self.limits.injector
        )
        self.carm = SimCArm(
            names["carm"],
            self.clock,
            self.patient,
            self.table,
            seed=self.scenario.seed,
            limits=self.limits.carm,
            panel=_panel(request),
            timed_trigger=request.options.get("carm_timed_trigger", True) is not False,
        )
        self.persistence = RoomPersistence(self)
        #: set when another backend serves the injector: the patient follows it instead
        self.follower: InjectorFollower | None = None
        foreign = request.peers.get("injector")
        if isinstance(foreign, Injector) and "injector" not in request.links:
            self.follower = InjectorFollower(foreign, self.patient)
        self.faults: FaultInjector | None = None
        restore = request.options.get("restore_from")
        if restore:
            self._restore(Path(str(restore)) / STATE_FILE, request.options)

    def _restore(self, path: Path, options: Mapping[str, object]) -> None:
        """Come back as the saved state left the room; an unreadable state is refused
        (ConfigError naming the file), never half-applied to a live exam."""
        try:
            state = json.loads(path.read_bytes())
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            restore_room(self, state, float(str(options.get("restore_shift_s", 0.0))))
        except (OSError, ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            raise ConfigError(
                path, None, "", f"the simulator's saved state cannot be restored: {exc!r}"
            ) from None

    def inject_faults(self, specs: str | list[str]) -> FaultInjector:
        """Arm fault specs (``KIND[*COUNT]@TIME``), times after the exam start (the room's
        opening) or after the injection start.

        Once per exam: a room restored from its saved state (``restore_from``) does not arm a
        spec that already fired, and arms the rest at their original absolute times. Each
        firing is saved at once (:class:`~hardware_sim.persist.RoomPersistence`).
        """
        if self.faults is None:
            self.faults = FaultInjector(self)
        self.faults.on_fired = lambda _fired: self.persistence.save()
        self.faults.apply(parse_faults(specs))
        return self.faults

    async def aclose(self) -> None:
        if self.faults is not None:
            self.faults.cancel()
        if self.follower is not None:
            self.follower.close()
        await self.injector.aclose()

    def device_set(self) -> DeviceSet:
        s = self.scenario
        return DeviceSet(
            carm=self.carm,
            table=self.table,
            injector=self.injector,
            effects=SimEffects(self),
            info={
                "patient_id": s.id,
                "patient_name": s.name,
                "patient_sex": s.sex,
                "patient_birth_date": s.birth_date.isoformat() if s.birth_date else None,
                "patient_weight_kg": s.build.weight_kg,
                "patient_height_cm": s.build.height_cm,
                "patient_ap_thickness_cm": s.build.ap_thickness_cm,
                "kidney_midplane_mm": round(self.patient.kidney_midplane_mm(), 1),
                "scenario": str(Path(self.scenario_path)),
                "sim_room": self,
                "persistence": self.persistence,
            },
            close=self.aclose,
        )


def _panel(request: RoomRequest) -> str:
    """The ``panel`` option: ``raw`` (default; the host calibrates) or ``corrected`` (on board)."""
    panel = str(request.options.get("panel", "raw"))
    if panel not in PANEL_MODES:
        where = request.base_dir / "room options"
        raise ConfigError(where, None, "options.panel", f"must be raw or corrected, not {panel!r}")
    return panel


async def open_sim_room(request: RoomRequest) -> DeviceSet | RoomDevices:
    """Open the simulated devices for the room's ``sim://`` links around one patient.

    All three roles: a whole simulated room. Only some (a mixed room, see
    :func:`drivers.backends.open_room`): the C-arm and table are simulated, and a foreign
    injector (``request.peers["injector"]``) drives the patient's contrast through its events.
    """
    for role, link in request.links.items():
        if urlsplit(link).scheme != "sim":
            raise ValueError(f"the sim backend serves only sim:// links; {role} is {link}")
    if "carm" in request.links and "table" not in request.links:
        raise ValueError("a simulated C-arm needs the simulated table (table: sim://table)")
    room = SimRoom(request)
    faults = request.options.get("faults")
    if faults:
        try:
            room.inject_faults(str(faults))
        except FaultSpecError as exc:
            raise ConfigError("--fault", None, "", str(exc)) from None
    full = room.device_set()
    if set(request.links) >= {"carm", "table", "injector"}:
        return full
    return RoomDevices(
        carm=full.carm if "carm" in request.links else None,
        table=full.table if "table" in request.links else None,
        injector=full.injector if "injector" in request.links else None,
        effects=full.effects,
        info=full.info,
        close=full.close,
    )
