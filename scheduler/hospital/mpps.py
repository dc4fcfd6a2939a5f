"""Modality Performed Procedure Step (MPPS) messages of an exam, as datasets.

* :func:`in_progress`: the N-CREATE at the first exposure: patient, the scheduled step the
  exam performs (from the order when there is one, else the exam's own identity:
  accession number, procedure code, study UID), the step's start, status IN PROGRESS.
* :func:`final`: the N-SET at the end: COMPLETED, or DISCONTINUED with a Discontinuation
  Reason Code Sequence (equipment failure when a device fault ended the exam, otherwise
  "discontinued for unspecified reason"); the Performed Series Sequence listing every object
  the exam wrote, per series; the Radiation Dose module from the exam's ``summary.json``
  totals and, per exposure, the Exposure Dose Sequence from the images' own attributes.

The SOP Instance UID of the MPPS is derived from the Study Instance UID, so a restarted
process (``fluoroctl resume``) continues the same procedure step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.uid import generate_uid

from ..records import ExamInfo

#: Modality Performed Procedure Step SOP Class
SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
#: CID 9300 Procedure Discontinuation Reasons
EQUIPMENT_FAILURE = ("110501", "DCM", "Equipment failure")
UNSPECIFIED = ("110513", "DCM", "Discontinued for unspecified reason")
#: Structured Report storage SOP classes start with this: non-image objects in the MPPS
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


@dataclass(frozen=True, slots=True)
class ScheduledStep:
    """The worklist's scheduled step the exam performs (empty fields: an unscheduled exam)."""

    accession_number: str
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    scheduled_step_id: str = ""
    scheduled_step_description: str = ""


def scheduled_step(exam: ExamInfo) -> ScheduledStep:
    """The step the exam's order scheduled (its worklist entry), else an unscheduled one."""
    req = exam.request
    if req is None:
        return ScheduledStep(
            accession_number=exam.accession_number,
            requested_procedure_description=exam.study_description,
        )
    return ScheduledStep(
        accession_number=exam.accession_number,
        requested_procedure_id=req.requested_procedure_id,
        requested_procedure_description=req.requested_procedure_description
        or exam.study_description,
        scheduled_step_id=req.scheduled_procedure_step_id,
        scheduled_step_description=req.scheduled_procedure_step_description,
    )


def mpps_uid(exam: ExamInfo) -> str:
    """The exam's MPPS SOP Instance UID (the same in every process of the exam)."""
    return str(generate_uid(entropy_srcs=[exam.study_instance_uid, "mpps"]))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def in_progress(
    exam: ExamInfo,
    station_ae: str,
    started: dt.datetime,
    scheduled: ScheduledStep | None = None,
) -> Dataset:
    """The N-CREATE dataset (PS3.4 F.7.2.1; IHE RAD-6 required attributes)."""
    step = scheduled or scheduled_step(exam)
    item = Dataset()
    item.StudyInstanceUID = exam.study_instance_uid
    item.ReferencedStudySequence = []
    item.AccessionNumber = step.accession_number
    item.RequestedProcedureID = step.requested_procedure_id
    item.RequestedProcedureDescription = step.requested_procedure_description
    item.ScheduledProcedureStepID = step.scheduled_step_id
    item.ScheduledProcedureStepDescription = step.scheduled_step_description
    item.ScheduledProtocolCodeSequence = []
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ScheduledStepAttributesSequence = [item]
    ds.PatientName = exam.patient.name
    ds.PatientID = exam.patient.patient_id
    ds.PatientBirthDate = (
        "" if exam.patient.birth_date is None else exam.patient.birth_date.strftime("%Y%m%d")
    )
    ds.PatientSex = exam.patient.sex
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = exam.study_id
    ds.PerformedStationAETitle = station_ae
    ds.PerformedStationName = exam.station_name[:16]  # SH
    ds.PerformedLocation = exam.institution[:16]  # SH: the institution, cut to fit
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = IN_PROGRESS
    ds.PerformedProcedureStepDescription = exam.study_description[:64]
    ds.PerformedProcedureTypeDescription = exam.study_description[:64]
    ds.ProcedureCodeSequence = [_code(exam.procedure_code, "CPT4", exam.study_description[:64])]
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "RF"
    ds.StudyID = exam.study_id
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def final(
    summary: Mapping[str, Any],
    headers: Sequence[Dataset],
    ended: dt.datetime,
) -> Dataset:
    """The N-SET dataset closing the step, from the exam's summary and its objects' headers."""
    completed = summary.get("state") == "completed"
    ds = Dataset()
    ds.PerformedProcedureStepStatus = COMPLETED if completed else DISCONTINUED
    ds.PerformedProcedureStepEndDate = ended.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = ended.strftime("%H%M%S")
    if not completed:
        reason = EQUIPMENT_FAILURE if summary.get("state") == "faulted" else UNSPECIFIED
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [_code(*reason)]
        text = str(summary.get("reason") or "")
        ds.CommentsOnThePerformedProcedureStep = text[:10240]
    ds.PerformedSeriesSequence = performed_series(headers)
    _radiation_dose(ds, summary, headers)
    return ds


def performed_series(headers: Sequence[Dataset]) -> list[Dataset]:
    """One item per series, in the order the series first appear, referencing each object."""
    series: dict[str, Dataset] = {}
    for h in headers:
        uid = str(h.SeriesInstanceUID)
        item = series.get(uid)
        if item is None:
            item = Dataset()
            item.SeriesInstanceUID = uid
            item.SeriesDescription = str(h.get("SeriesDescription", ""))
            item.ProtocolName = str(h.get("ProtocolName", ""))
            item.PerformingPhysicianName = ""
            item.OperatorsName = ""
            item.RetrieveAETitle = ""
            item.ReferencedImageSequence = []
            item.ReferencedNonImageCompositeSOPInstanceSequence = []
            series[uid] = item
        ref = Dataset()
        ref.ReferencedSOPClassUID = str(h.SOPClassUID)
        ref.ReferencedSOPInstanceUID = str(h.SOPInstanceUID)
        if str(h.SOPClassUID).startswith(_SR_PREFIX):
            item.ReferencedNonImageCompositeSOPInstanceSequence.append(ref)
        else:
            item.ReferencedImageSequence.append(ref)
    return list(series.values())


def _radiation_dose(ds: Dataset, summary: Mapping[str, Any], headers: Sequence[Dataset]) -> None:
    """Radiation Dose module (PS3.3 C.4.16): totals from the summary, exposures from images."""
    totals = summary.get("totals") or {}
    images = [h for h in headers if not str(h.SOPClassUID).startswith(_SR_PREFIX)]
    fluoro_s = totals.get("fluoro_time_s")
    if fluoro_s is not None:
        ds.TotalTimeOfFluoroscopy = round(float(fluoro_s))
    # exposures are irradiation events: a tomosynthesis sweep is one, however many layers
    events: dict[str, Dataset] = {}
    for h in images:
        events.setdefault(str(h.get("IrradiationEventUID") or h.SOPInstanceUID), h)
    ds.TotalNumberOfExposures = len(events)
    dap = totals.get("dap_gy_cm2")
    if dap is not None:
        ds.ImageAndFluoroscopyAreaDoseProduct = f"{float(dap) * 10:.4g}"  # dGy·cm²
    kerma = totals.get("reference_air_kerma_mgy")
    if kerma is not None:
        ds.CommentsOnRadiationDose = (
            f"Reference point air kerma {float(kerma):.3f} mGy; "
            f"DAP {float(dap or 0):.4f} Gy.cm2; fluoroscopy {float(fluoro_s or 0):.1f} s"
        )
    ds.ExposureDoseSequence = [_exposure(h) for h in events.values()]


def _exposure(header: Dataset) -> Dataset:
    item = Dataset()
    pulsed = int(header.get("NumberOfFrames", 1) or 1) > 1
    item.RadiationMode = "PULSED" if pulsed else "CONTINUOUS"
    for keyword in ("KVP", "ExposureTime", "XRayTubeCurrentInuA", "FilterType"):
        if keyword in header:
            setattr(item, keyword, header[keyword].value)
    if "XRayTubeCurrentInuA" not in item and "XRayTubeCurrent" in header:
        item.XRayTubeCurrentInuA = f"{float(header.XRayTubeCurrent) * 1000:.6g}"
    return item
