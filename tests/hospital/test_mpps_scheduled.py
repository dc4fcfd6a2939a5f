"""MPPS names the worklist step the exam performs (IHE RAD-6: Scheduled Step Attributes)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from scheduler.exam.identity import ANONYMOUS, exam_from_json, exam_json, make_exam_info
from scheduler.hospital.mpps import in_progress
from scheduler.orders import load_order
from scheduler.protocol import load_protocol
from scheduler.room import load_room

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)


def _exam(order_yaml: str | None, tmp_path: Path):
    protocol = load_protocol(ROOT / "configs/protocols/ivu-standard.yaml")
    room = load_room(ROOT / "configs/rooms/simulator.yaml")
    order = None
    if order_yaml is not None:
        (tmp_path / "order.yaml").write_text(order_yaml)
        order = load_order(tmp_path / "order.yaml")
    return make_exam_info(protocol, room, ANONYMOUS, START, order)


ORDER = """order:
  patient_id: MRN-1
  patient_name: Doe^Jane
  accession_number: ACC7
  requested_procedure_id: RP7
  requested_procedure_description: IV urogram
  requested_procedure_code: {value: "74400", scheme: C4, meaning: Urography}
  scheduled_procedure_step_id: SPS7
  scheduled_procedure_step_description: IVU with tomography
  referring_physician: House^Gregory
"""


def test_an_ordered_exam_reports_its_scheduled_step(tmp_path: Path) -> None:
    exam = _exam(ORDER, tmp_path)
    item = in_progress(exam, "FLUORO1", START).ScheduledStepAttributesSequence[0]
    assert (item.AccessionNumber, item.RequestedProcedureID) == ("ACC7", "RP7")
    assert item.ScheduledProcedureStepID == "SPS7"
    assert item.ScheduledProcedureStepDescription == "IVU with tomography"
    assert item.RequestedProcedureDescription == "IV urogram"
    # what resume rebuilds from the journal reports the same step
    again = exam_from_json(exam_json(exam))
    assert again.request == exam.request
    assert in_progress(again, "FLUORO1", START).ScheduledStepAttributesSequence[0] == item


def test_an_unordered_exam_is_an_unscheduled_step(tmp_path: Path) -> None:
    exam = _exam(None, tmp_path)
    item = in_progress(exam, "FLUORO1", START).ScheduledStepAttributesSequence[0]
    assert item.ScheduledProcedureStepID == "" and item.AccessionNumber == exam.accession_number
