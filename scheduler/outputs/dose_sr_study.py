"""The dose SR's identity and references: the patient and study it belongs to, the order it
answers, the images it reports on (SR Document General module)."""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from ..records import ExamInfo
from .dicom_values import _da, _lo, _local, _sh, _text, _tm


def fill_identity(ds: Dataset, exam: ExamInfo, zone: dt.tzinfo) -> None:
    """Identity the first image did not give (an exam whose images are unreadable)."""
    started = _local(exam.study_datetime, zone)
    p = exam.patient
    defaults: dict[str, object] = {
        "PatientName": _text(p.name, 64),
        "PatientID": _lo(p.patient_id),
        "PatientBirthDate": _da(p.birth_date) if p.birth_date else "",
        "PatientSex": p.sex if p.sex in ("M", "F", "O") else "",
        "StudyInstanceUID": exam.study_instance_uid,
        "StudyDate": _da(started),
        "StudyTime": _tm(started),
        "ReferringPhysicianName": "",
        "StudyID": _sh(exam.study_id),
        "AccessionNumber": _sh(exam.accession_number),
        "StudyDescription": _lo(exam.study_description),
        "Manufacturer": _lo(exam.manufacturer),
        "InstitutionName": _lo(exam.institution),
        "StationName": _sh(exam.station_name),
        "ManufacturerModelName": _lo(exam.model_name),
        "DeviceSerialNumber": _lo(exam.device_serial),
        "SoftwareVersions": _lo(exam.software_version),
    }
    for keyword, value in defaults.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    # Enhanced General Equipment makes these type 1: never empty
    for keyword, fallback in (
        ("Manufacturer", "fluoroctl"),
        ("ManufacturerModelName", "fluoroctl"),
        ("DeviceSerialNumber", "0"),
        ("SoftwareVersions", "0"),
    ):
        if not str(ds.get(keyword, "") or "").strip():
            setattr(ds, keyword, fallback)


def request(exam: ExamInfo) -> Dataset:
    """Referenced Request Sequence item: the order the exam answered."""
    req = exam.request
    assert req is not None
    item = Dataset()
    item.StudyInstanceUID = exam.study_instance_uid
    item.ReferencedStudySequence = DicomSequence()
    item.AccessionNumber = _sh(exam.accession_number)
    item.PlacerOrderNumberImagingServiceRequest = ""
    item.FillerOrderNumberImagingServiceRequest = ""
    item.RequestedProcedureID = _sh(req.requested_procedure_id)
    item.RequestedProcedureDescription = _lo(req.requested_procedure_description)
    code = Dataset()
    if req.procedure_code is not None:
        value, scheme, meaning = req.procedure_code
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
            _sh(value),
            _sh(scheme),
            _lo(meaning),
        )
        item.RequestedProcedureCodeSequence = DicomSequence([code])
    else:
        item.RequestedProcedureCodeSequence = DicomSequence()
    return item


def evidence(exam: ExamInfo, headers: list[tuple[str, Dataset]]) -> Dataset:
    """Current Requested Procedure Evidence: every image the report's events reference."""
    study = Dataset()
    study.StudyInstanceUID = exam.study_instance_uid
    series: dict[str, list[Dataset]] = {}
    for _, h in headers:
        ref = Dataset()
        ref.ReferencedSOPClassUID = str(h.SOPClassUID)
        ref.ReferencedSOPInstanceUID = str(h.SOPInstanceUID)
        series.setdefault(str(h.SeriesInstanceUID), []).append(ref)
    items = []
    for uid, refs in series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedSOPSequence = DicomSequence(refs)
        items.append(item)
    study.ReferencedSeriesSequence = DicomSequence(items)
    return study
