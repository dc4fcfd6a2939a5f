"""The ``sim://`` backend: a whole simulated room sharing one patient and one clock."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from drivers import DeviceEvent
from drivers.backends import DeviceSet, RoomRequest

from .carm import SimCArm
from .injector import SimInjector
from .patient import SimPatient
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
        elif action == "void":
            voided = patient.void()
            self._room.table._publish(
                DeviceEvent(
                    "patient", "voided", self._room.clock.now(), {"voided_ml": round(voided, 1)}
                )
            )


class SimRoom:
    def __init__(self, request: RoomRequest) -> None:
        self.clock = request.clock
        name = str(request.options.get("patient", "normal"))
        path = resolve_scenario_path(name, request.base_dir)
        self.scenario = load_scenario(path)
        self.scenario_path = path
        self.patient = SimPatient(self.scenario, self.clock)
        names = {role: urlsplit(link).netloc or role for role, link in request.links.items()}
        self.table = SimTable(names["table"], self.clock)
        self.injector = SimInjector(names["injector"], self.clock, self.patient)
        self.carm = SimCArm(
            names["carm"], self.clock, self.patient, self.table, seed=self.scenario.seed
        )

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
                "scenario": str(Path(self.scenario_path)),
                "sim_room": self,
            },
        )


async def open_sim_room(request: RoomRequest) -> DeviceSet:
    for role, link in request.links.items():
        if urlsplit(link).scheme != "sim":
            raise ValueError(f"the sim backend serves only sim:// links; {role} is {link}")
    return SimRoom(request).device_set()
