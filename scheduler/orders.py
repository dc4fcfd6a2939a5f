"""Exam orders: who the exam is for and what was asked for — the identity every object of the
exam carries (docs/dicom.md, "Modality Worklist").

An :class:`Order` comes from one of three places, and the exam is the same whichever it is:

* the Modality Worklist (:mod:`scheduler.hospital.worklist`, ``fluoroctl run --order ACC``);
* an order file (``--order-file FILE``, root key ``order:``, docs/order-schema.json), checked
  like every other file: one line naming file, line and field;
* the command line (``--patient-id --patient-name --birth-date --sex --weight-kg
  --accession``).

Without an order, a room whose devices are all simulated in this process takes the simulated
patient's identity (the scenario); any other room is a real patient's, and the run refuses
to start without an order unless ``--unidentified`` asks for a temporary identity, which is
then marked as such (see :func:`unidentified_order`).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drivers.config import ConfigError, format_loc, load_model

from .records import PatientInfo

#: DICOM value limits (PS3.5 §6.2): LO 64, SH 16, UI 64 characters; no backslash in any.
LO_MAX, SH_MAX, UI_MAX = 64, 16, 64
_UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
#: Heaviest patient a weight may give (table limits are ~250 kg; 500 is a typo catcher).
MAX_WEIGHT_KG = 500.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _text(limit: int) -> Any:
    return Field(default="", max_length=limit, pattern=r"^[^\\\r\n]*$")


class CodedValue(_Model):
    """A code triplet (PS3.3 §8.8): e.g. ``{value: "74400", scheme: C4, meaning: "IVU"}``."""

    value: str = Field(min_length=1, max_length=SH_MAX, pattern=r"^[^\\\r\n]*$")
    scheme: str = Field(
        default="", max_length=SH_MAX, pattern=r"^[^\\\r\n]*$", description="e.g. C4 (CPT-4)"
    )
    meaning: str = _text(LO_MAX)


class Order(_Model):
    """One scheduled procedure: the patient, the request, and where it was scheduled.

    Names are DICOM person names (``Family^Given``). Only ``patient_id`` and
    ``patient_name`` are required; an order without an accession number gets one made up
    locally when the exam starts (as runs without an order always did).
    """

    patient_id: str = Field(min_length=1, max_length=LO_MAX, pattern=r"^[^\\\r\n]*$")
    patient_name: str = Field(
        min_length=1, max_length=LO_MAX, pattern=r"^[^\\\r\n]*$", description="Family^Given"
    )
    birth_date: dt.date | None = None
    sex: Literal["M", "F", "O"] = Field(default="O", description="M, F or O (other/unknown)")
    weight_kg: float | None = Field(default=None, gt=0, le=MAX_WEIGHT_KG)
    height_cm: float | None = Field(default=None, gt=0, le=300)
    accession_number: str | None = Field(
        default=None, min_length=1, max_length=SH_MAX, pattern=r"^[^\\\r\n]*$"
    )
    requested_procedure_id: str = _text(SH_MAX)
    requested_procedure_description: str = _text(LO_MAX)
    requested_procedure_code: CodedValue | None = None
    referring_physician: str = _text(LO_MAX)
    scheduled_station_ae: str = _text(SH_MAX)
    scheduled_procedure_step_id: str = _text(SH_MAX)
    scheduled_procedure_step_description: str = _text(LO_MAX)
    scheduled_start: dt.datetime | None = None
    modality: str = _text(SH_MAX)
    study_instance_uid: str | None = Field(
        default=None,
        max_length=UI_MAX,
        description="the Study Instance UID the RIS assigned, if it did; else one is made",
    )

    @field_validator("study_instance_uid")
    @classmethod
    def _uid(cls, value: str | None) -> str | None:
        if value is not None and not _UID_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a UID (dotted numbers, no leading zeros)")
        return value

    @field_validator("patient_id", "patient_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @property
    def procedure_code(self) -> str | None:
        """The requested procedure's code value (the key of the room's ``procedures:``)."""
        return (
            None if self.requested_procedure_code is None else self.requested_procedure_code.value
        )

    def patient(self) -> PatientInfo:
        return PatientInfo(
            patient_id=self.patient_id,
            name=self.patient_name,
            sex=self.sex,
            birth_date=self.birth_date,
            weight_kg=self.weight_kg,
            height_cm=self.height_cm,
        )

    def journal_json(self) -> dict[str, Any]:
        """The order as the journal's ``exam_started`` line keeps it (unset fields left out)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


OrderSource = Literal["worklist", "order-file", "command-line", "api", "scenario", "unidentified"]


def load_order(path: Path | str) -> Order:
    """An order file, validated; a bad one is a :class:`ConfigError` naming file, line, field."""
    return load_model(path, Order, root_key="order")


#: ``run`` flag -> Order field, for the identity given on the command line
IDENTITY_FLAGS: dict[str, str] = {
    "patient_id": "--patient-id",
    "patient_name": "--patient-name",
    "birth_date": "--birth-date",
    "sex": "--sex",
    "weight_kg": "--weight-kg",
    "accession_number": "--accession",
}


def order_from_flags(values: dict[str, object]) -> Order:
    """An order from ``run``'s identity flags (field -> value, None = not given).

    ``--patient-id`` and ``--patient-name`` are required together; a bad value is a
    one-line :class:`ConfigError` naming the flag."""
    given = {k: v for k, v in values.items() if v is not None}
    for name in ("patient_id", "patient_name"):
        if name not in given:
            other = IDENTITY_FLAGS["patient_name" if name == "patient_id" else "patient_id"]
            raise ConfigError(
                IDENTITY_FLAGS[name],
                None,
                "",
                f"an identity on the command line needs {IDENTITY_FLAGS[name]} (with {other})",
            )
    try:
        return Order.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        flag = IDENTITY_FLAGS.get(field, format_loc(err["loc"]))
        raise ConfigError(flag, None, "", f"{given.get(field)!r}: {err['msg']}") from None


def unidentified_order(station: str, now: dt.datetime) -> Order:
    """A temporary identity for an exam run on purpose without an order (``--unidentified``):
    a patient ID unique to this exam — never one shared ``ANON`` under which an archive would
    merge every unidentified patient — and a name that says what it is, for the PACS
    reconciliation that must follow (IHE Patient Information Reconciliation)."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    return Order(
        patient_id=f"UNIDENTIFIED-{stamp}"[:LO_MAX],
        patient_name=f"UNIDENTIFIED^{station}"[:LO_MAX],
        sex="O",
    )


def order_with_weight(order: Order, weight_kg: float | None) -> Order:
    """``order`` with the weight measured in the room (``--weight-kg``), when one is given."""
    if weight_kg is None:
        return order
    return order.model_copy(update={"weight_kg": weight_kg})


__all__ = [
    "IDENTITY_FLAGS",
    "CodedValue",
    "Order",
    "OrderSource",
    "load_order",
    "order_from_flags",
    "order_with_weight",
    "unidentified_order",
]
