"""Modality Worklist SCU: the room asks the RIS which procedures are scheduled (C-FIND,
Modality Worklist Information Model - FIND, PS3.4 Annex K).

The query goes to the room's ``dicom.worklist`` peer with the room's ``dicom.ae_title`` as
calling AE title, for scheduled procedure steps of modality RF, on one date (or for one
accession number on any date), optionally scheduled on one station AE. Each match becomes an
:class:`~scheduler.orders.Order`. An unreachable or refusing worklist is a
:class:`WorklistError` whose message is one line naming the peer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, TM

from ..orders import MAX_WEIGHT_KG, CodedValue, Order
from .config import DicomConfig, Peer

log = logging.getLogger(__name__)

MODALITY = "RF"
#: C-FIND statuses (PS3.4 §K.4.1.1.4): pending with a match, success, cancel
_PENDING = (0xFF00, 0xFF01)
_SUCCESS = 0x0000
_FAILURES = {
    0xA700: "out of resources",
    0xA900: "identifier does not match SOP class",
    0xFE00: "cancelled",
}


class WorklistError(Exception):
    """The worklist could not be asked, or refused: the message is one line naming the peer."""


def peer_name(peer: Peer) -> str:
    return f"worklist {peer.ae}@{peer.host}:{peer.port}"


def worklist_peer(dicom: DicomConfig, room_file: str) -> Peer:
    """The room's worklist, or a :class:`WorklistError` saying the room has none."""
    if dicom.worklist is None:
        raise WorklistError(
            f"{room_file}: the room has no worklist: add dicom: {{worklist: {{ae, host, port}}}}"
        )
    return dicom.worklist


def query(
    dicom: DicomConfig,
    peer: Peer,
    *,
    date: dt.date | None = None,
    accession: str | None = None,
    station_ae: str | None = None,
) -> list[Order]:
    """Scheduled RF procedure steps from ``peer``: on ``date`` (None: any date), for
    ``accession`` (None: any), on ``station_ae`` (None: any station), in the order the RIS
    gave them. Entries that are not a usable order (no patient ID) are logged and left out.

    Blocks up to the peer's ``timeout_s`` per exchange; raises :class:`WorklistError`."""
    identifiers = _find(dicom.ae_title, peer, _query_dataset(date, accession, station_ae))
    orders: list[Order] = []
    for ds in identifiers:
        try:
            orders.extend(orders_of(ds))
        except (ValidationError, ValueError) as exc:
            log.warning("%s: entry left out: %s", peer_name(peer), " ".join(str(exc).split()))
    return orders


def _query_dataset(date: dt.date | None, accession: str | None, station_ae: str | None) -> Dataset:
    """The C-FIND identifier: matching keys given, every return key we read left empty."""
    ds = Dataset()
    ds.SpecificCharacterSet = ""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientWeight = None
    ds.PatientSize = None
    ds.AccessionNumber = accession or ""
    ds.ReferringPhysicianName = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    ds.RequestedProcedureCodeSequence = [_empty_code()]
    sps = Dataset()
    sps.Modality = MODALITY
    sps.ScheduledStationAETitle = station_ae or ""
    sps.ScheduledProcedureStepStartDate = "" if date is None else date.strftime("%Y%m%d")
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepID = ""
    sps.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _empty_code() -> Dataset:
    code = Dataset()
    code.CodeValue = ""
    code.CodingSchemeDesignator = ""
    code.CodeMeaning = ""
    return code


def _find(calling_ae: str, peer: Peer, identifier: Dataset) -> list[Dataset]:
    from pynetdicom import AE
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
        ModalityWorklistInformationFind,
    )

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout_s
    ae.connection_timeout = peer.timeout_s
    where = peer_name(peer)
    with _pynetdicom_quiet() as said:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae)
    if not assoc.is_established:
        cause = next((m for m in reversed(said) if "Errno" in m or "timed out" in m), "")
        detail = f" [{cause.split(': ', 1)[-1]}]" if cause else ""
        raise WorklistError(f"{where}: {_not_established(assoc, peer)}{detail}")
    try:
        found: list[Dataset] = []
        for status, ds in assoc.send_c_find(identifier, ModalityWorklistInformationFind):
            if not status:  # no status: the peer went silent or the association broke
                raise WorklistError(
                    f"{where}: no reply within {peer.timeout_s:g} s (or the association broke)"
                )
            code = int(status.Status)
            if code in _PENDING and ds is not None:
                found.append(ds)
            elif code != _SUCCESS and code not in _PENDING:
                why = _FAILURES.get(code, "unable to process" if code >> 12 == 0xC else "failed")
                comment = status.get("ErrorComment", "")
                raise WorklistError(
                    f"{where}: query refused: status 0x{code:04X} ({why})"
                    + (f": {comment}" if comment else "")
                )
        return found
    finally:
        if assoc.is_established:
            assoc.release()


@contextlib.contextmanager
def _pynetdicom_quiet() -> Iterator[list[str]]:
    """pynetdicom logs a failed connection at ERROR on several lines; the caller says it once,
    in one line, so its messages are collected here instead of printed."""
    logger = logging.getLogger("pynetdicom")
    said: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    handler, propagate = _Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _not_established(assoc: Any, peer: Peer) -> str:
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        reason = getattr(rsp, "reason_str", "") if rsp is not None else ""
        return f"association rejected ({reason or 'no reason given'})"
    if assoc.is_aborted and assoc.acceptor.primitive is not None:
        return "association aborted (the worklist accepts no Modality Worklist query from us)"
    return (
        f"cannot connect (refused, unreachable or no answer within {peer.timeout_s:g} s): "
        "is the worklist running, and are host and port right?"
    )


# -- identifiers -> orders ---------------------------------------------------------------------
def orders_of(ds: Dataset) -> Iterator[Order]:
    """One order per scheduled procedure step in a worklist identifier."""
    steps = list(ds.get("ScheduledProcedureStepSequence") or []) or [Dataset()]
    for sps in steps:
        yield Order(
            patient_id=_str(ds, "PatientID"),
            patient_name=_str(ds, "PatientName"),
            birth_date=_date(ds.get("PatientBirthDate")),
            sex=_sex(_str(ds, "PatientSex")),
            weight_kg=_positive(ds.get("PatientWeight"), MAX_WEIGHT_KG),
            height_cm=_metres_to_cm(ds.get("PatientSize")),
            accession_number=_str(ds, "AccessionNumber") or None,
            requested_procedure_id=_str(ds, "RequestedProcedureID"),
            requested_procedure_description=_str(ds, "RequestedProcedureDescription"),
            requested_procedure_code=_code(ds.get("RequestedProcedureCodeSequence")),
            referring_physician=_str(ds, "ReferringPhysicianName"),
            scheduled_station_ae=_str(sps, "ScheduledStationAETitle"),
            scheduled_procedure_step_id=_str(sps, "ScheduledProcedureStepID"),
            scheduled_procedure_step_description=_str(sps, "ScheduledProcedureStepDescription"),
            scheduled_start=_start(sps),
            modality=_str(sps, "Modality"),
            study_instance_uid=_str(ds, "StudyInstanceUID") or None,
        )


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _sex(value: str) -> Any:
    return value if value in ("M", "F", "O") else "O"


def _date(value: object) -> dt.date | None:
    if not value:
        return None
    try:
        parsed = DA(str(value))
    except ValueError:
        return None
    return dt.date(parsed.year, parsed.month, parsed.day)


def _start(sps: Dataset) -> dt.datetime | None:
    day = _date(sps.get("ScheduledProcedureStepStartDate"))
    if day is None:
        return None
    raw = _str(sps, "ScheduledProcedureStepStartTime")
    try:
        t = TM(raw) if raw else None
    except ValueError:
        t = None
    return dt.datetime.combine(day, dt.time(t.hour, t.minute, t.second) if t else dt.time())


def _positive(value: object, limit: float) -> float | None:
    try:
        number = float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and 0 < number <= limit else None


def _metres_to_cm(value: object) -> float | None:
    metres = _positive(value, 3.0)
    return None if metres is None else round(metres * 100.0, 1)


def _code(seq: Sequence[Dataset] | None) -> CodedValue | None:
    if not seq:
        return None
    item = seq[0]
    value = _str(item, "CodeValue")
    if not value:
        return None
    return CodedValue(
        value=value,
        scheme=_str(item, "CodingSchemeDesignator"),
        meaning=_str(item, "CodeMeaning"),
    )


__all__ = ["MODALITY", "WorklistError", "orders_of", "peer_name", "query", "worklist_peer"]
