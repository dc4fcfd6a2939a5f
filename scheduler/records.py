"""What an exam produced: the records every output writer (DICOM, summary, sheet) reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from drivers import CollimationField, Dose, Frame, PositionerPose, TablePosition, Technique

#: DICOM Patient Position (0018,5100) and a human label per protocol position name.
PATIENT_POSITIONS: dict[str, tuple[str, str]] = {
    "supine": ("HFS", "supine"),
    "prone": ("HFP", "prone"),
    # Obliques lie on the back turned ~30°: head first, decubitus-like codes do not apply;
    # DICOM has no oblique code, so HFS with the obliquity recorded in the view description.
    "lpo": ("HFS", "left posterior oblique"),
    "rpo": ("HFS", "right posterior oblique"),
}


@dataclass(frozen=True, slots=True)
class PatientInfo:
    patient_id: str
    name: str  # DICOM PN form, e.g. "Doe^Jane"
    sex: str  # "M" | "F" | "O"
    birth_date: dt.date | None
    weight_kg: float | None = None
    height_cm: float | None = None


@dataclass(frozen=True, slots=True)
class ContrastInfo:
    agent: str  # e.g. "Iohexol 300"
    concentration_mg_ml: float
    route: str = "IV"
    volume_ml: float = 0.0  # delivered so far, as the injector reported
    start_time: dt.datetime | None = None  # injector-reported start (wall clock)
    stop_time: dt.datetime | None = None
    flow_rates_ml_s: tuple[float, ...] = ()
    flow_durations_s: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the order asked for (the worklist's Requested Procedure and Scheduled Procedure
    Step): every object carries it in its Request Attributes Sequence."""

    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    procedure_code: tuple[str, str, str] | None = None  # (value, scheme, meaning)
    scheduled_procedure_step_id: str = ""
    scheduled_procedure_step_description: str = ""
    referring_physician: str = ""


@dataclass(frozen=True, slots=True)
class ExamInfo:
    """Study-level identity shared by every object of one exam."""

    study_instance_uid: str
    series_instance_uid: str
    study_id: str
    accession_number: str
    study_description: str  # e.g. "IVU standard (CPT 74400)"
    procedure_code: str  # e.g. "74400"
    study_datetime: dt.datetime
    patient: PatientInfo
    institution: str = "fluoroctl simulator"
    station_name: str = "SIM-ROOM"
    manufacturer: str = "fluoroctl"
    model_name: str = "fluoroctl-sim"
    device_serial: str = "0"
    software_version: str = "0.1.0"
    #: the organisation's UID root (the room's ``dicom.uid_root``, ≤ 24 characters) under
    #: which every UID of the exam's objects is made; None: ``2.25.<UUID>`` UIDs
    uid_root: str | None = None
    #: the order's request (None: an exam without an order)
    request: RequestInfo | None = None


@dataclass(frozen=True, slots=True)
class TomoInfo:
    """X-Ray Tomography Acquisition attributes of one reconstructed layer."""

    layer_height_mm: float
    sweep_deg: float
    projections: int
    sweep_time_s: float
    #: the whole sweep's dose: every layer is made from the same irradiation, so each image
    #: states it (the frames carry it once, on the first layer, so sums over frames stay
    #: true); None when unknown
    sweep_dose: Dose | None = None


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One acquisition: a radiograph (one frame) or a fluoroscopy run (several frames).

    Times are loop-monotonic seconds (``*_s``) and wall-clock datetimes (``*_time``).
    ``after_injection_s`` is relative to the injector-confirmed start, None before injection.
    """

    step_id: str
    label: str
    kind: str  # "radiograph" | "fluoro"
    instance_number: int
    frames: tuple[Frame, ...]
    planned_s: float | None
    commanded_s: float
    device_s: float
    acquisition_time: dt.datetime
    after_injection_s: float | None
    patient_position: str  # key of PATIENT_POSITIONS
    technique: Technique
    pose: PositionerPose
    collimation: CollimationField
    table: TablePosition
    contrast: ContrastInfo | None
    pulse_rate_hz: float | None = None
    view_description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    tomo: TomoInfo | None = None

    @property
    def event_dose(self) -> Dose:
        """The dose of the irradiation that made the image: its frames' sum; a tomosynthesis
        layer states its whole sweep's (each layer is reconstructed from all of it; the
        layers share the sweep's Irradiation Event UID, so a dose report counts it once),
        consistent with its Exposure, which is the sweep's mAs."""
        if self.tomo is not None and self.tomo.sweep_dose is not None:
            return self.tomo.sweep_dose
        return Dose(
            sum(f.dose.reference_air_kerma_mgy for f in self.frames),
            sum(f.dose.entrance_air_kerma_mgy for f in self.frames),
            sum(f.dose.dap_gy_cm2 for f in self.frames),
        )

    @property
    def frame_time_ms(self) -> float | None:
        return None if not self.pulse_rate_hz else 1000.0 / self.pulse_rate_hz
