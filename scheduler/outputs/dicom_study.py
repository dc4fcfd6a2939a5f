"""The patient, study, series and equipment part of an image object: who it is of, which
order it answers (Request Attributes), which series it belongs to, which device made it."""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from ..records import PATIENT_POSITIONS, CaptureRecord, ExamInfo, RequestInfo
from .dicom_attrs import ImageAttributes
from .dicom_series import SeriesInfo
from .dicom_values import _age, _da, _ds, _lo, _local, _sh, _text, _tm


def _patient(ds: ImageAttributes, exam: ExamInfo, zone: dt.tzinfo) -> None:
    p = exam.patient
    ds.PatientName = _text(p.name, 64)
    ds.PatientID = _lo(p.patient_id)
    ds.PatientBirthDate = _da(p.birth_date) if p.birth_date else ""
    ds.PatientSex = p.sex if p.sex in ("M", "F", "O") else ""
    if p.birth_date is not None:
        ds.PatientAge = _age(p.birth_date, _local(exam.study_datetime, zone).date())
    if p.weight_kg is not None:
        ds.PatientWeight = _ds(p.weight_kg)
    if p.height_cm is not None:
        ds.PatientSize = _ds(p.height_cm / 100.0)  # metres


def _study_series_equipment(
    ds: ImageAttributes, exam: ExamInfo, record: CaptureRecord, series: SeriesInfo, zone: dt.tzinfo
) -> None:
    started = _local(exam.study_datetime, zone)
    ds.StudyInstanceUID = exam.study_instance_uid
    ds.StudyDate = _da(started)
    ds.StudyTime = _tm(started)
    req = exam.request
    ds.ReferringPhysicianName = _text(req.referring_physician, 64) if req else ""
    ds.StudyID = _sh(exam.study_id)
    ds.AccessionNumber = _sh(exam.accession_number)
    ds.StudyDescription = _lo(exam.study_description)
    triplet = req.procedure_code if req and req.procedure_code else None
    if exam.procedure_code:
        # CPT-4 unless the order said which scheme its code is in
        _, scheme, meaning = triplet or ("", "", "")
        ds.ProcedureCodeSequence = DicomSequence(
            [_code(exam.procedure_code, scheme or "C4", meaning or exam.study_description)]
        )
    if req is not None:
        ds.RequestAttributesSequence = DicomSequence([_request_item(exam, req)])

    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.Modality = "RF"
    ds.SeriesDate = series.date
    ds.SeriesTime = series.time
    ds.SeriesDescription = series.description
    ds.BodyPartExamined = "ABDOMEN"
    ds.PatientPosition = PATIENT_POSITIONS[record.patient_position][0]

    ds.Manufacturer = _lo(exam.manufacturer)
    ds.InstitutionName = _lo(exam.institution)
    ds.StationName = _sh(exam.station_name)
    ds.ManufacturerModelName = _lo(exam.model_name)
    ds.DeviceSerialNumber = _lo(exam.device_serial)
    ds.SoftwareVersions = _lo(exam.software_version)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = _sh(value)
    item.CodingSchemeDesignator = _sh(scheme)
    item.CodeMeaning = _lo(meaning)
    return item


def _request_item(exam: ExamInfo, req: RequestInfo) -> Dataset:
    """Request Attributes Sequence item (PS3.3 §10.13): the order this object answers."""
    item = Dataset()
    item.AccessionNumber = _sh(exam.accession_number)
    item.RequestedProcedureID = _sh(req.requested_procedure_id)
    if req.requested_procedure_description:
        item.RequestedProcedureDescription = _lo(req.requested_procedure_description)
    if req.procedure_code is not None:
        item.RequestedProcedureCodeSequence = DicomSequence([_code(*req.procedure_code)])
    item.ScheduledProcedureStepID = _sh(req.scheduled_procedure_step_id)
    if req.scheduled_procedure_step_description:
        item.ScheduledProcedureStepDescription = _lo(req.scheduled_procedure_step_description)
    return item
