"""Issue 13's acceptance, end to end: the RIS's worklist names the patient, the exam runs on
the simulator, Orthanc (a real PACS) receives every image and the dose report, and the RIS
hears the procedure step completed through MPPS. Real peers, started here: dcmtk's
``wlmscpfs``, Orthanc, a pynetdicom MPPS SCP."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
import yaml

from tests.hospital.conftest import MppsScp, Orthanc, dicom_room, orthanc_destination
from tests.hospital.worklist_peer import (
    Entry,
    WorklistPeer,
    fluoroctl,
)

pytestmark = pytest.mark.peers  # real DICOM peers, started per test on free ports; virtual-time exams, so they run with the parallel tests

ORDER = Entry(
    "A2026-0042",
    "MRN-004217",
    "Doe^Jane",
    procedure_code="74400",
    weight_kg=68.0,
    referring="House^Gregory",
)


def hospital_room(tmp_path: Path, pacs: Orthanc, ris: WorklistPeer, mpps: MppsScp) -> Path:
    path = dicom_room(
        tmp_path / "room.yaml",
        destinations=[orthanc_destination(pacs)],
        mpps={"ae": "RIS", "host": "127.0.0.1", "port": mpps.port},
    )
    room = yaml.safe_load(path.read_text())
    room["room"]["dicom"]["worklist"] = {
        "ae": ris.ae,
        "host": ris.host,
        "port": ris.port,
        "timeout_s": 5,
    }
    room["room"]["procedures"] = {"74400": "ivu-standard"}
    path.write_text(yaml.safe_dump(room))
    return path


def test_an_ordered_exam_reaches_pacs_and_ris_with_the_worklist_identity(
    tmp_path: Path, orthanc: Orthanc, worklist_peer: WorklistPeer, mpps_scp: MppsScp
) -> None:
    worklist_peer.add(ORDER)
    room = hospital_room(tmp_path, orthanc, worklist_peer, mpps_scp)
    out = tmp_path / "exam"
    assert fluoroctl("run", "--order", ORDER.accession, "--room", str(room), "--out", str(out)) == 0
    assert fluoroctl("dicom", "flush", str(out), "--timeout", "60") == 0

    written = sorted(out.glob("*.dcm"))
    objects = [pydicom.dcmread(p, stop_before_pixels=True) for p in written]
    assert any(ds.Modality == "SR" for ds in objects), [p.name for p in written]
    # Orthanc holds exactly the exam: one patient, one study, every object once.
    assert orthanc.count("patients") == 1 and orthanc.count("studies") == 1
    assert sorted(orthanc.instance_uids()) == sorted(str(ds.SOPInstanceUID) for ds in objects)
    assert orthanc.count("series") == len({str(ds.SeriesInstanceUID) for ds in objects})
    for instance in orthanc.instance_ids():
        tags = orthanc.tags(instance)
        assert tags["PatientName"] == "Doe^Jane" and tags["PatientID"] == "MRN-004217"
        assert tags["AccessionNumber"] == ORDER.accession
        assert tags["StudyInstanceUID"] == ORDER.study_uid  # the RIS's study
    # The RIS heard the step start and complete, with what was performed.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed"
    (uid,) = {created for created, _ in mpps_scp.creates}
    assert mpps_scp.status_of(uid) == "COMPLETED"
    step = mpps_scp.instances[uid]
    assert step.ScheduledStepAttributesSequence[0].AccessionNumber == ORDER.accession
    assert step.ScheduledStepAttributesSequence[0].ScheduledProcedureStepID == ORDER.sps_id
    performed = {
        str(img.ReferencedSOPInstanceUID)
        for series in step.PerformedSeriesSequence
        for img in series.ReferencedImageSequence
    }
    images = {str(ds.SOPInstanceUID) for ds in objects if ds.Modality == "RF"}
    assert performed == images
