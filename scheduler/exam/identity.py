"""The exam's identity (the order): study, series, patient; and what the journal keeps of it
and of the room for ``fluoroctl resume``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ..operator import ScriptedOperator
from ..orders import Order
from ..outputs.dicom_ids import uid_from
from ..protocol import Protocol
from ..records import ExamInfo, PatientInfo, RequestInfo
from ..room import Room
from .context import ExamContext

#: who the exam is for when neither an order nor the room names a patient (tests and the
#: API's bare rooms; ``fluoroctl run`` marks such an exam UNIDENTIFIED instead)
ANONYMOUS = PatientInfo(patient_id="ANON", name="Anonymous", sex="O", birth_date=None)


def make_exam_info(
    protocol: Protocol,
    room: Room,
    patient: PatientInfo,
    wall_start: dt.datetime,
    order: Order | None = None,
) -> ExamInfo:
    """The study a run creates. With an ``order`` the order's identity wins over ``patient``
    (on the simulator, the simulated patient): its patient, accession number, Study
    Instance UID (when the RIS gave one) and requested procedure; what it leaves out is made
    here — UIDs derived from the patient, protocol and start time, an accession number
    ``FX<start time>``."""
    if order is not None:
        patient = order.patient()
    seed = [patient.patient_id, protocol.name, wall_start.isoformat()]
    code = (order.procedure_code if order else None) or protocol.procedure_code
    description = (order.requested_procedure_description if order else "") or (
        f"{protocol.name} (CPT {protocol.procedure_code})"
    )
    root = room.dicom.uid_root
    return ExamInfo(
        study_instance_uid=(order.study_instance_uid if order else None)
        or uid_from(root, *seed, "study"),
        series_instance_uid=uid_from(root, *seed, "series"),
        study_id=wall_start.strftime("%y%m%d%H%M"),
        accession_number=(order.accession_number if order else None)
        or f"FX{wall_start.strftime('%Y%m%d%H%M%S')}",
        study_description=description,
        procedure_code=code,
        study_datetime=wall_start,
        patient=patient,
        institution=room.institution,
        station_name=room.station_name,
        uid_root=root,
        request=None if order is None else _request(order),
    )


def _request(order: Order) -> RequestInfo:
    code = order.requested_procedure_code
    return RequestInfo(
        requested_procedure_id=order.requested_procedure_id or "",
        requested_procedure_description=order.requested_procedure_description or "",
        procedure_code=None if code is None else (code.value, code.scheme, code.meaning),
        scheduled_procedure_step_id=order.scheduled_procedure_step_id or "",
        scheduled_procedure_step_description=order.scheduled_procedure_step_description or "",
        referring_physician=order.referring_physician or "",
    )


def identity_summary(exam: ExamInfo, order: Order | None, source: str) -> dict[str, Any]:
    """Who and what the exam was for, as ``summary.json``'s ``identity`` holds it."""
    p = exam.patient
    out: dict[str, Any] = {
        "source": source,
        "patient_id": p.patient_id,
        "patient_name": p.name,
        "birth_date": None if p.birth_date is None else p.birth_date.isoformat(),
        "sex": p.sex,
        "weight_kg": p.weight_kg,
        "accession_number": exam.accession_number,
        "study_instance_uid": exam.study_instance_uid,
        "procedure_code": exam.procedure_code,
        "study_description": exam.study_description,
    }
    if order is not None:
        out["order"] = order.journal_json()
    return out


def exam_json(exam: ExamInfo) -> dict[str, Any]:
    """``exam`` as the journal's ``exam_started`` context holds it (for ``resume``)."""
    data = dataclasses.asdict(exam)
    data["study_datetime"] = exam.study_datetime.isoformat()
    birth = exam.patient.birth_date
    data["patient"]["birth_date"] = None if birth is None else birth.isoformat()
    return data


def exam_from_json(data: dict[str, Any]) -> ExamInfo:
    """The inverse of :func:`exam_json`."""
    patient = dict(data["patient"])
    birth = patient.get("birth_date")
    patient["birth_date"] = None if birth is None else dt.date.fromisoformat(birth)
    request = data.get("request")
    if request:
        code = request.get("procedure_code")
        request = RequestInfo(**{**request, "procedure_code": tuple(code) if code else None})
    return ExamInfo(
        **{
            **data,
            "study_datetime": dt.datetime.fromisoformat(data["study_datetime"]),
            "patient": PatientInfo(**patient),
            "request": request or None,
        }
    )


def resume_context(ctx: ExamContext, extra: dict[str, Any]) -> dict[str, Any]:
    """What `fluoroctl resume` needs to rebuild this exam without the original files
    (``exam_started``'s ``context``)."""
    clock = ctx.clock
    return {
        **extra,
        "protocol": ctx.protocol.model_dump(mode="json", exclude_unset=True),
        "room": ctx.room.model_dump(mode="json", exclude_unset=True),
        "patient": ctx.info.scenario,
        "operator": "scripted" if isinstance(ctx.operator, ScriptedOperator) else "terminal",
        "virtual_time": clock.is_virtual,
        "wall_at_loop0": clock.wall_at(0.0).isoformat(),
        # loop time ↔ time.monotonic(): a resumed process continues on this time axis
        "clock": clock.mapping,
        # the links as resolved when the room was opened (sim serve's ptys, ports)
        "links": ctx.info.links,
        "exam": exam_json(ctx.exam),
    }
