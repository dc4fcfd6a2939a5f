"""The Modality Worklist against a real SCP (dcmtk's wlmscpfs): ``fluoroctl worklist`` and
``fluoroctl run --order ACCESSION`` on the in-process simulator (virtual time)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pydicom
import pytest

from tests.conftest import ROOT
from tests.hospital.worklist_peer import (
    Entry,
    WorklistPeer,
    fluoroctl,
    free_port,
)

SIM_ROOM = (ROOT / "configs/rooms/simulator.yaml").read_text()
LINKS_ROOM = (ROOT / "configs/rooms/sim-links.yaml").read_text()
PROCEDURES = '    "74400": ivu-accelerated\n'

JANE = Entry("ACC1001", "P-1001", "Doe^Jane", weight_kg=68.0, study_uid="2.25.1234567890123")
RICK = Entry(
    "ACC1002",
    "P-1002",
    "Roe^Rick",
    sex="M",
    station_ae="FLUORO2",
    procedure_code="74410",
    procedure_description="IVU with nephrotomography",
)
LATER = Entry("ACC1003", "P-1003", "Poe^Ann", date=dt.date.today() + dt.timedelta(days=1))


def room_file(tmp_path: Path, peer: WorklistPeer, base: str = SIM_ROOM, **kw: str) -> Path:
    path = tmp_path / "room.yaml"
    path.write_text(peer.room_yaml(base, procedures=kw.get("procedures", PROCEDURES)))
    return path


def _listed(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    assert fluoroctl("worklist", *argv, "--json") == 0
    data: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return data


def test_worklist_lists_today_and_filters_by_date_and_station(tmp_path, worklist_peer, capsys):
    for entry in (JANE, RICK, LATER):
        worklist_peer.add(entry)
    room = str(room_file(tmp_path, worklist_peer))

    today = _listed(capsys, "--room", room)
    assert sorted(o["accession_number"] for o in today) == ["ACC1001", "ACC1002"]
    jane = next(o for o in today if o["accession_number"] == "ACC1001")
    assert jane["patient_name"] == "Doe^Jane" and jane["patient_id"] == "P-1001"
    assert jane["birth_date"] == "1970-03-02" and jane["sex"] == "F" and jane["weight_kg"] == 68
    assert jane["requested_procedure_code"] == {
        "value": "74400",
        "scheme": "C4",
        "meaning": "Urography (IVU)",
    }
    assert jane["requested_procedure_description"] == "IVU with tomography"
    assert jane["referring_physician"] == "House^Gregory"
    assert jane["scheduled_station_ae"] == "FLUORO1"
    assert jane["scheduled_procedure_step_id"] == "SPS1"
    assert jane["study_instance_uid"] == JANE.study_uid

    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert [o["accession_number"] for o in _listed(capsys, "--room", room, "--date", tomorrow)] == [
        "ACC1003"
    ]
    # --station without a value: the room's own AE title (FLUORO1)
    assert [o["accession_number"] for o in _listed(capsys, "--room", room, "--station")] == [
        "ACC1001"
    ]
    assert [
        o["accession_number"] for o in _listed(capsys, "--room", room, "--station", "FLUORO2")
    ] == ["ACC1002"]


def test_worklist_table_names_the_patients(tmp_path, worklist_peer, capsys):
    worklist_peer.add(JANE)
    assert fluoroctl("worklist", "--room", str(room_file(tmp_path, worklist_peer))) == 0
    out = capsys.readouterr().out
    assert "ACC1001" in out and "Doe^Jane" in out and "74400" in out


def test_unreachable_or_refusing_worklist_is_one_line_naming_the_peer(
    tmp_path, worklist_peer, capsys
):
    room = tmp_path / "room.yaml"
    port = free_port()  # nothing listens there
    room.write_text(
        SIM_ROOM.rstrip()
        + f"\n  dicom:\n    worklist: {{ae: RIS, host: 127.0.0.1, port: {port}, timeout_s: 2}}\n"
    )
    assert fluoroctl("worklist", "--room", str(room)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"RIS@127.0.0.1:{port}" in err and "cannot connect" in err

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        SIM_ROOM.rstrip() + f"\n  dicom:\n    worklist: {{ae: NOTRIS, host: 127.0.0.1, "
        f"port: {worklist_peer.port}}}\n"
    )
    assert fluoroctl("worklist", "--room", str(wrong)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NOTRIS@127.0.0.1" in err and "rejected" in err

    out = tmp_path / "exam"
    assert fluoroctl("run", "--order", "ACC1", "--room", str(room), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"RIS@127.0.0.1:{port}" in err
    assert not out.exists()


def _exam_objects(out: Path) -> list[pydicom.Dataset]:
    files = sorted(out.glob("*.dcm"))
    assert files, f"no DICOM in {out}"
    return [pydicom.dcmread(f) for f in files]


def _journal(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_run_order_gives_every_object_the_worklist_identity(tmp_path, worklist_peer, capsys):
    worklist_peer.add(JANE)
    out = tmp_path / "exam"
    room = room_file(tmp_path, worklist_peer)
    assert fluoroctl("run", "--order", "ACC1001", "--room", str(room), "--out", str(out)) == 0

    for ds in _exam_objects(out):
        assert (str(ds.PatientName), ds.PatientID) == ("Doe^Jane", "P-1001")
        assert (ds.PatientBirthDate, ds.PatientSex, float(ds.PatientWeight)) == (
            "19700302",
            "F",
            68.0,
        )
        assert ds.AccessionNumber == "ACC1001"
        assert ds.StudyInstanceUID == JANE.study_uid
        assert ds.ProcedureCodeSequence[0].CodeValue == "74400"
        assert ds.StudyDescription == "IVU with tomography"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["patient_id"] == "P-1001"
    assert summary["study_instance_uid"] == JANE.study_uid
    identity = summary["identity"]
    assert identity["source"] == "worklist"
    assert (identity["patient_name"], identity["accession_number"]) == ("Doe^Jane", "ACC1001")
    assert identity["order"]["referring_physician"] == "House^Gregory"
    assert identity["order"]["requested_procedure_id"] == "RP1"

    started = next(e for e in _journal(out) if e["kind"] == "exam_started")
    context = started["data"]["context"]
    assert context["exam"]["patient"]["name"] == "Doe^Jane"
    assert context["exam"]["accession_number"] == "ACC1001"
    assert context["order"]["requested_procedure_code"]["value"] == "74400"
    assert context["identity_source"] == "worklist"
    # the protocol is the one the room maps 74400 to
    assert started["data"]["protocol"] == "IVU accelerated 1-4-7 min"


def test_run_order_writes_the_request_attributes(tmp_path, worklist_peer):
    worklist_peer.add(JANE)
    out = tmp_path / "exam"
    room = room_file(tmp_path, worklist_peer)
    assert fluoroctl("run", "--order", "ACC1001", "--room", str(room), "--out", str(out)) == 0
    objects = _exam_objects(out)
    for ds in objects:
        assert str(ds.ReferringPhysicianName) == "House^Gregory"
        if ds.Modality == "SR":  # the dose report names the order as SR documents do
            assert ds.ReferencedRequestSequence[0].AccessionNumber == "ACC1001"
            continue
        request = ds.RequestAttributesSequence[0]
        assert request.RequestedProcedureID == "RP1"
        assert request.ScheduledProcedureStepID == "SPS1"
        assert request.AccessionNumber == "ACC1001"
        code = request.RequestedProcedureCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == ("74400", "C4")


def test_unmapped_code_and_unknown_accession_are_refused_before_anything(
    tmp_path, worklist_peer, capsys
):
    worklist_peer.add(RICK)  # 74410: not in the room's procedures
    room = room_file(tmp_path, worklist_peer)
    out = tmp_path / "exam"

    assert fluoroctl("run", "--order", "ACC1002", "--room", str(room), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "'74410'" in err and str(room) in err and "room.procedures" in err

    assert fluoroctl("run", "--order", "NOPE", "--room", str(room), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'NOPE'" in err and "RIS@127.0.0.1" in err
    assert not out.exists()


def test_room_with_a_worklist_on_real_links_refuses_a_run_without_an_order(
    tmp_path, worklist_peer, capsys
):
    room = room_file(tmp_path, worklist_peer, base=LINKS_ROOM)
    out = tmp_path / "exam"
    assert fluoroctl("run", "ivu-accelerated", "--room", str(room), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--order" in err and "--unidentified" in err
    assert not out.exists()
