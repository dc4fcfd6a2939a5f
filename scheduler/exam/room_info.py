"""What the engine reads from an opened room besides its devices, typed once.

A backend may add facts to :attr:`drivers.backends.DeviceSet.info` (an open mapping, so
that backends need no scheduler types). The engine reads them here and nowhere else: the
patient a simulated room holds, the scenario and links to record for ``resume``, and an
optional persistence object for rooms that cannot outlive the process (the in-process
simulator saves itself into the exam folder; decision 0007).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from drivers.backends import DeviceSet

from ..records import PatientInfo


@runtime_checkable
class Persistence(Protocol):
    """A room that keeps its own state in the exam folder, so a restart finds it."""

    def persist_to(self, directory: Path) -> None:
        """Save into ``directory`` from now on (room state, the detector's acquisitions)."""
        ...

    def recover_acquisitions(self, since_s: float) -> list[tuple[str, Any]]:
        """Acquisitions (``(kind, payload)``) the detector holds that began at ``since_s``
        or later: ``radiograph`` → Frame, ``fluoro`` → FluoroRun, ``tomo`` → TomoSeries."""
        ...


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """The typed view of ``DeviceSet.info``."""

    #: the patient the room simulates (a real room has none: the order names the patient)
    patient: PatientInfo | None = None
    #: the simulated patient's scenario file, recorded so ``resume`` reloads the same one
    scenario: str | None = None
    #: the link URLs as resolved when the room was opened (sim serve's ptys and ports)
    links: dict[str, str] | None = None
    persistence: Persistence | None = None

    @classmethod
    def of(cls, devices: DeviceSet) -> RoomInfo:
        return cls.parse(devices.info)

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> RoomInfo:
        persistence = info.get("persistence")
        links = info.get("links")
        scenario = info.get("scenario")
        return cls(
            patient=_patient(info),
            scenario=str(scenario) if scenario is not None else None,
            links={str(k): str(v) for k, v in links.items()} if isinstance(links, dict) else None,
            persistence=persistence if isinstance(persistence, Persistence) else None,
        )


def _patient(info: Mapping[str, Any]) -> PatientInfo | None:
    if "patient_id" not in info and "patient_name" not in info:
        return None
    birth = info.get("patient_birth_date")
    return PatientInfo(
        patient_id=str(info.get("patient_id", "ANON")),
        name=str(info.get("patient_name", "Anonymous")),
        sex=str(info.get("patient_sex", "O")),
        birth_date=dt.date.fromisoformat(birth) if isinstance(birth, str) else None,
        weight_kg=_float_or_none(info.get("patient_weight_kg")),
        height_cm=_float_or_none(info.get("patient_height_cm")),
    )


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
