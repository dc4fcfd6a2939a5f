"""The exam's X-Ray Radiation Dose SR (SOP 1.2.840.10008.5.1.4.1.1.88.67), ``dose-sr.dcm``.

Content tree by PS3.16 (DCMR), root template TID 10001 "Projection X-Ray Radiation Dose":

* ``X-Ray Radiation Dose Report`` (113701, DCM) container, with Procedure reported = Projection
  X-Ray (113704) and its intent (diagnostic);
* TID 1002/1004 observer context: the observer is a device (121007), the C-arm, named by the
  room's station name, manufacturer, model and serial number (the exam's ExamInfo), with a
  Device Observer UID derived from them; Scope of Accumulation = Study (113014) with the
  Study Instance UID;
* TID 10002 ``Accumulated X-Ray Dose Data`` (113702), single plane: fluoroscopy and
  acquisition DAP and Dose (RP) totals, total fluoroscopy and acquisition time, DAP and Dose
  (RP) totals, Total Number of Radiographic Frames, Reference Point Definition;
* one TID 10003 ``Irradiation Event X-Ray Data`` (113706) per irradiation event
  (:mod:`.dose_ledger`): a radiograph (Stationary Acquisition, 113611), a fluoroscopy run
  (Fluoroscopy, SCT 44491008, pulsed, with pulse rate and number of pulses), a
  tomosynthesis sweep once (Rotational Acquisition, 113613: the tube sweeps through an
  angle; its layers share the event's UID). Each carries the images' Irradiation Event UID,
  its start, target region (abdomen), DAP, Dose (RP), the collimated field area, kVp, tube
  current, exposure time, irradiation duration, the positioner angles and distances, and
  references to its images (Acquired Image, 113795).

Units as PS3.16 asks: DAP in Gy·m², Dose (RP) in Gy (the reference point is the IEC 60601-2-43
patient entrance reference point, 15 cm from the isocentre toward the source, code 113860),
times in s / ms, current in mA, exposure in µAs, areas in m², angles in degrees, distances in
mm. The patient, study and equipment attributes are copied from the exam's first image so the
SR agrees with the images (one patient, one study) as an archive checks it; the SR has its own
series.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code
from pydicom.uid import UID, ExplicitVRLittleEndian

from ..records import ExamInfo
from . import dose_sr_codes as dc
from .dicom_ids import IMPLEMENTATION_CLASS_UID, implementation_version_name, uid_from
from .dicom_values import _da, _local, _offset, _tm, exam_zone
from .dicom_write import ImageExistsError, _write_atomically
from .dose_ledger import DoseEvent, DoseLedger
from .dose_sr_study import evidence, fill_identity, request

__all__ = [
    "DOSE_SR_FILE",
    "XRAY_RADIATION_DOSE_SR_STORAGE",
    "build_dose_sr",
    "dose_sr_uid",
    "write_dose_sr",
]

log = logging.getLogger(__name__)

XRAY_RADIATION_DOSE_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.67")
DOSE_SR_FILE = "dose-sr.dcm"

#: attributes copied from the exam's first image: Patient, Patient Study, General Study and
#: General Equipment values must agree across the study's objects
_COPIED = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "PatientSize",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "ProcedureCodeSequence",
    "Manufacturer",
    "InstitutionName",
    "StationName",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
)


def dose_sr_uid(exam: ExamInfo, what: str) -> UID:
    """The SR's ``what`` UID (``sop-instance``, ``series``): one report per exam, the same
    after a restart, under the room's UID root."""
    return uid_from(exam.uid_root, exam.study_instance_uid, "dose-sr", what)


# -- templates --------------------------------------------------------------------------------


def _observer_context(exam: ExamInfo) -> list[Dataset]:
    """TID 1002 with TID 1004: the device that observed the doses, the C-arm."""
    device_uid = uid_from(
        exam.uid_root, "device-observer", exam.manufacturer, exam.model_name, exam.device_serial
    )
    items = [
        dc.code_item("HAS OBS CONTEXT", dc.OBSERVER_TYPE, dc.DEVICE),
        dc.uid_item("HAS OBS CONTEXT", dc.DEVICE_OBSERVER_UID, device_uid),
        dc.text_item("HAS OBS CONTEXT", dc.DEVICE_OBSERVER_NAME, exam.station_name),
        dc.text_item("HAS OBS CONTEXT", dc.DEVICE_OBSERVER_MANUFACTURER, exam.manufacturer),
        dc.text_item("HAS OBS CONTEXT", dc.DEVICE_OBSERVER_MODEL, exam.model_name),
        dc.text_item("HAS OBS CONTEXT", dc.DEVICE_OBSERVER_SERIAL, exam.device_serial),
    ]
    if exam.institution:
        items.append(dc.text_item("HAS OBS CONTEXT", dc.DEVICE_OBSERVER_LOCATION, exam.institution))
    return items


def _accumulated(ledger: DoseLedger) -> Dataset:
    """TID 10002 (with TID 10004 and TID 10007): the exam's totals, single plane."""
    return dc.container(
        "CONTAINS",
        dc.ACCUMULATED_XRAY_DOSE,
        [
            dc.code_item("HAS CONCEPT MOD", dc.ACQUISITION_PLANE, dc.SINGLE_PLANE),
            dc.num("CONTAINS", dc.FLUORO_DAP_TOTAL, _gy_m2(ledger.fluoro_dap_gy_cm2), dc.GY_M2),
            dc.num(
                "CONTAINS",
                dc.FLUORO_DOSE_RP_TOTAL,
                ledger.fluoro_reference_air_kerma_mgy / 1000.0,
                dc.GY,
            ),
            dc.num("CONTAINS", dc.TOTAL_FLUORO_TIME, ledger.fluoro_time_s, dc.SECONDS),
            dc.num(
                "CONTAINS",
                dc.ACQUISITION_DAP_TOTAL,
                _gy_m2(ledger.acquisition_dap_gy_cm2),
                dc.GY_M2,
            ),
            dc.num(
                "CONTAINS",
                dc.ACQUISITION_DOSE_RP_TOTAL,
                ledger.acquisition_reference_air_kerma_mgy / 1000.0,
                dc.GY,
            ),
            dc.num("CONTAINS", dc.TOTAL_ACQUISITION_TIME, ledger.acquisition_time_s, dc.SECONDS),
            dc.num("CONTAINS", dc.DAP_TOTAL, _gy_m2(ledger.dap_gy_cm2), dc.GY_M2),
            dc.num("CONTAINS", dc.DOSE_RP_TOTAL, ledger.reference_air_kerma_mgy / 1000.0, dc.GY),
            dc.num(
                "CONTAINS", dc.TOTAL_RADIOGRAPHIC_FRAMES, ledger.radiographic_frames, dc.NO_UNITS
            ),
            dc.code_item("CONTAINS", dc.REFERENCE_POINT_DEFINITION, dc.RP_15CM_FROM_ISOCENTER),
        ],
    )


def _event_type(event: DoseEvent) -> Code:
    return {
        "fluoro": dc.FLUOROSCOPY,
        "tomo": dc.ROTATIONAL_ACQUISITION,
    }.get(event.kind, dc.STATIONARY_ACQUISITION)


def _protocol_text(event: DoseEvent) -> str:
    if event.kind == "fluoro":
        return f"{event.step}: pulsed fluoroscopy"
    if event.kind == "tomo":
        sweep = f" over {event.sweep_deg:g} deg" if event.sweep_deg is not None else ""
        n = f", {event.projections} projections" if event.projections is not None else ""
        return f"{event.step}: linear tomosynthesis{sweep}{n}"
    return f"{event.step}: radiograph"


def _irradiation_event(
    event: DoseEvent, zone: dt.tzinfo, images: dict[str, tuple[str, str]]
) -> Dataset:
    """TID 10003 (with TID 10003B source and TID 10003C mechanical data) of one event."""
    items = [
        dc.code_item("HAS CONCEPT MOD", dc.ACQUISITION_PLANE, dc.SINGLE_PLANE),
        dc.uid_item("CONTAINS", dc.IRRADIATION_EVENT_UID, event.uid),
        dc.text_item("CONTAINS", dc.IRRADIATION_EVENT_LABEL, event.label or event.step),
    ]
    if event.started is not None:
        items.append(dc.datetime_item("CONTAINS", dc.DATETIME_STARTED, _local(event.started, zone)))
    items += [
        dc.code_item("CONTAINS", dc.IRRADIATION_EVENT_TYPE, _event_type(event)),
        dc.text_item("CONTAINS", dc.ACQUISITION_PROTOCOL, _protocol_text(event)),
        dc.code_item("CONTAINS", dc.TARGET_REGION, dc.ABDOMEN),
        dc.num("CONTAINS", dc.DOSE_AREA_PRODUCT, _gy_m2(event.dap_gy_cm2), dc.GY_M2),
        dc.num("CONTAINS", dc.DOSE_RP, event.reference_air_kerma_mgy / 1000.0, dc.GY),
        dc.code_item("CONTAINS", dc.REFERENCE_POINT_DEFINITION, dc.RP_15CM_FROM_ISOCENTER),
    ]
    if event.field_area_cm2 is not None:
        items.append(
            dc.num("CONTAINS", dc.COLLIMATED_FIELD_AREA, event.field_area_cm2 / 10000.0, dc.M2)
        )
    # TID 10003B: the source
    if event.kind == "fluoro":
        items.append(dc.code_item("CONTAINS", dc.FLUORO_MODE, dc.PULSED))
        if event.pulse_rate_hz is not None:
            items.append(dc.num("CONTAINS", dc.PULSE_RATE, event.pulse_rate_hz, dc.PULSES_PER_S))
        if event.pulses is not None:
            items.append(dc.num("CONTAINS", dc.NUMBER_OF_PULSES, event.pulses, dc.PULSES))
    items += [
        dc.num("CONTAINS", dc.IRRADIATION_DURATION, event.irradiation_duration_s, dc.SECONDS),
        dc.num("CONTAINS", dc.KVP, event.kv, dc.KV),
        dc.num("CONTAINS", dc.XRAY_TUBE_CURRENT, event.ma, dc.MA),
        dc.num("CONTAINS", dc.EXPOSURE_TIME, event.exposure_time_ms, dc.MS),
    ]
    if event.kind == "fluoro" and event.pulse_width_ms is not None:
        items.append(dc.num("CONTAINS", dc.PULSE_WIDTH, event.pulse_width_ms, dc.MS))
    items.append(dc.num("CONTAINS", dc.EXPOSURE, event.mas * 1000.0, dc.UAS))
    # TID 10003C: the positioner (a sweep runs through its angle, centred on the column's)
    if event.kind == "tomo" and event.sweep_deg is not None:
        half = event.sweep_deg / 2.0
        items += [
            dc.num("CONTAINS", dc.POSITIONER_PRIMARY_ANGLE, event.primary_angle_deg, dc.DEG),
            dc.num("CONTAINS", dc.POSITIONER_PRIMARY_END_ANGLE, event.primary_angle_deg, dc.DEG),
            dc.num(
                "CONTAINS", dc.POSITIONER_SECONDARY_ANGLE, event.secondary_angle_deg - half, dc.DEG
            ),
            dc.num(
                "CONTAINS",
                dc.POSITIONER_SECONDARY_END_ANGLE,
                event.secondary_angle_deg + half,
                dc.DEG,
            ),
        ]
    else:
        items += [
            dc.num("CONTAINS", dc.POSITIONER_PRIMARY_ANGLE, event.primary_angle_deg, dc.DEG),
            dc.num("CONTAINS", dc.POSITIONER_SECONDARY_ANGLE, event.secondary_angle_deg, dc.DEG),
        ]
    if event.source_isocentre_mm is not None:
        items.append(
            dc.num("CONTAINS", dc.DISTANCE_SOURCE_TO_ISOCENTER, event.source_isocentre_mm, dc.MM)
        )
    if event.sid_mm is not None:
        items.append(dc.num("CONTAINS", dc.DISTANCE_SOURCE_TO_DETECTOR, event.sid_mm, dc.MM))
    for name in event.files:
        if name in images:
            items.append(dc.image_item(*images[name]))
    return dc.container("CONTAINS", dc.IRRADIATION_EVENT, items)


def _gy_m2(gy_cm2: float) -> float:
    return gy_cm2 / 10000.0


# -- the object -------------------------------------------------------------------------------


def build_dose_sr(
    ledger: DoseLedger,
    exam: ExamInfo,
    out_dir: Path,
    *,
    written: dt.datetime,
) -> Dataset | None:
    """The exam's X-Ray Radiation Dose SR, or None when the exam irradiated nothing.

    ``out_dir`` holds the exam's images (their headers give the patient and study
    attributes and the references); ``written`` is the SR's content time (the exam's end).
    """
    if not ledger.events:
        return None
    zone = exam_zone(exam.study_datetime)
    headers = _image_headers(out_dir, ledger)
    first = headers[0][1] if headers else None
    images = {name: (str(h.SOPClassUID), str(h.SOPInstanceUID)) for name, h in headers}
    sop_uid = dose_sr_uid(exam, "sop-instance")
    when = _local(written, zone)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRAY_RADIATION_DOSE_SR_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = implementation_version_name()
    ds = Dataset()
    ds.file_meta = meta

    if first is not None:
        for keyword in _COPIED:
            if keyword in first:
                setattr(ds, keyword, first[keyword].value)
    fill_identity(ds, exam, zone)

    # SR Document Series
    ds.Modality = "SR"
    ds.SeriesInstanceUID = dose_sr_uid(exam, "series")
    ds.SeriesNumber = 1 + max((int(h.get("SeriesNumber", 0) or 0) for _, h in headers), default=0)
    ds.SeriesDate = _da(when)
    ds.SeriesTime = _tm(when)
    ds.SeriesDescription = "Radiation dose report"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()

    # SR Document General
    ds.InstanceNumber = 1
    ds.ContentDate = _da(when)
    ds.ContentTime = _tm(when)
    ds.CompletionFlag = "PARTIAL" if ledger.unreadable else "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.PerformedProcedureCodeSequence = (
        DicomSequence(list(ds.ProcedureCodeSequence)) if "ProcedureCodeSequence" in ds else []
    )
    if exam.request is not None:
        ds.ReferencedRequestSequence = DicomSequence([request(exam)])
    if headers:
        ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([evidence(exam, headers)])

    # SR Document Content: TID 10001
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([dc.code(dc.XRAY_RADIATION_DOSE_REPORT)])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "10001"
    ds.ContentTemplateSequence = DicomSequence([template])
    content = [
        dc.code_item(
            "HAS CONCEPT MOD",
            dc.PROCEDURE_REPORTED,
            dc.PROJECTION_XRAY,
            [dc.code_item("HAS CONCEPT MOD", dc.HAS_INTENT, dc.DIAGNOSTIC_INTENT)],
        ),
        *_observer_context(exam),
        dc.code_item(
            "HAS OBS CONTEXT",
            dc.SCOPE_OF_ACCUMULATION,
            dc.STUDY,
            [dc.uid_item("HAS PROPERTIES", dc.STUDY_INSTANCE_UID, exam.study_instance_uid)],
        ),
        _accumulated(ledger),
        *(_irradiation_event(e, zone, images) for e in ledger.events),
        dc.code_item("CONTAINS", dc.SOURCE_OF_DOSE_INFORMATION, dc.AUTOMATED_DATA_COLLECTION),
    ]
    ds.ContentSequence = DicomSequence(content)

    # SOP Common
    ds.SOPClassUID = XRAY_RADIATION_DOSE_SR_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    ds.TimezoneOffsetFromUTC = _offset(zone)
    return ds


def _image_headers(out_dir: Path, ledger: DoseLedger) -> list[tuple[str, Dataset]]:
    out: list[tuple[str, Dataset]] = []
    for event in ledger.events:
        for name in event.files:
            try:
                out.append((name, pydicom.dcmread(out_dir / name, stop_before_pixels=True)))
            except Exception:  # read by the ledger a moment ago; a vanished file is left out
                continue
    return out


def write_dose_sr(
    ledger: DoseLedger, exam: ExamInfo, out_dir: Path, *, written: dt.datetime
) -> Path | None:
    """Write ``dose-sr.dcm`` into ``out_dir`` (0644 less the umask, atomically, never over
    an existing file: :class:`~.dicom_write.ImageExistsError`); None when nothing was
    irradiated."""
    ds = build_dose_sr(ledger, exam, out_dir, written=written)
    if ds is None:
        return None
    path = Path(out_dir) / DOSE_SR_FILE
    _write_atomically(path, lambda f: ds.save_as(f, enforce_file_format=True))
    return path


__all__ += ["ImageExistsError"]
