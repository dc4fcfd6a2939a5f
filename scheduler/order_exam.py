"""Where an order enters an exam: the identity, the weight-based contrast, and what the
journal and summary.json keep of both (used by :func:`scheduler.compose.run_exam` and
:func:`scheduler.plan.plan_exam`).

Identity, in order of precedence: the order; the room's simulated patient (in-process
simulator rooms); else a temporary UNIDENTIFIED identity unique to the exam
(:func:`scheduler.orders.unidentified_order`) — never a shared ``ANON``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exam.identity import identity_summary, make_exam_info
from .exam.room_info import RoomInfo
from .orders import Order, OrderSource, unidentified_order
from .protocol import Protocol
from .records import ExamInfo
from .room import Room
from .weight_dose import WeightedVolume, weigh


@dataclass(frozen=True)
class ExamIdentity:
    """What a run needs from its order once the room is open."""

    exam: ExamInfo
    #: the protocol to run: weight-based volumes worked out for this patient
    protocol: Protocol
    order: Order | None
    source: OrderSource
    weighted: WeightedVolume | None

    def journal_context(self) -> dict[str, Any]:
        """Added to the journal's ``exam_started`` context."""
        out: dict[str, Any] = {"identity_source": self.source}
        if self.order is not None:
            out["order"] = self.order.journal_json()
        if self.weighted is not None:
            out["contrast_by_weight"] = self.weighted.to_json()
        return out

    def summary(self) -> dict[str, Any]:
        """Added to ``summary.json``: ``identity`` and, if any, ``contrast_by_weight``."""
        out: dict[str, Any] = {"identity": identity_summary(self.exam, self.order, self.source)}
        if self.weighted is not None:
            out["contrast_by_weight"] = self.weighted.to_json()
        return out


def identify_exam(
    protocol: Protocol,
    room: Room,
    info: RoomInfo,
    wall_start: dt.datetime,
    *,
    order: Order | None,
    source: OrderSource | None = None,
    protocol_path: Path | str | None = None,
) -> ExamIdentity:
    """The exam's identity and the protocol as it will run for this patient.

    Raises :class:`drivers.config.ConfigError` when the protocol is weight-based and no
    weight is known (the order has none and the room simulates no patient)."""
    if order is None and info.patient is None:
        order, source = unidentified_order(room.station_name, wall_start), "unidentified"
    if source is None:
        source = "scenario" if order is None else "command-line"
    weight, weight_from = None, ""
    if order is not None and order.weight_kg is not None:
        weight, weight_from = order.weight_kg, f"order ({source})"
    elif info.patient is not None and info.patient.weight_kg is not None:
        weight, weight_from = info.patient.weight_kg, "simulated patient"
    protocol, weighted = weigh(
        protocol,
        room.limits,
        weight,
        weight_source=weight_from,
        protocol_path=protocol_path,
        remedy="the order has no weight: give --weight-kg KG (the weight measured in the room)",
    )
    if order is not None:
        patient = order.patient()
    else:
        assert info.patient is not None  # no order and no simulated patient: unidentified
        patient = info.patient
    exam = make_exam_info(protocol, room, patient, wall_start, order)
    return ExamIdentity(exam, protocol, order, source, weighted)
