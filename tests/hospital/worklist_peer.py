"""A real Modality Worklist SCP for the tests: dcmtk's ``wlmscpfs`` serving worklist files
written with pydicom into a temporary database folder, on a free loopback port.

``wlmscpfs -dfp DIR PORT`` answers a C-FIND called ``AE`` from the ``*.wl`` files in
``DIR/AE/`` (which must also hold a file named ``lockfile``). Tests ask for the
``worklist_peer`` fixture (tests/hospital/conftest.py registers it).
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

WORKLIST_AE = "RIS"


@dataclass(frozen=True)
class Entry:
    """One scheduled procedure step, as a RIS would hold it."""

    accession: str
    patient_id: str
    patient_name: str
    procedure_code: str = "74400"
    procedure_scheme: str = "C4"
    procedure_meaning: str = "Urography (IVU)"
    procedure_description: str = "IVU with tomography"
    procedure_id: str = "RP1"
    birth_date: str = "19700302"
    sex: str = "F"
    weight_kg: float | None = 68.0
    referring: str = "House^Gregory"
    station_ae: str = "FLUORO1"
    sps_id: str = "SPS1"
    sps_description: str = "IVU standard"
    date: dt.date = field(default_factory=dt.date.today)
    time: str = "083000"
    modality: str = "RF"
    #: a RIS assigns the study UID (type 1 in a worklist answer; wlmscpfs skips files without)
    study_uid: str = field(default_factory=lambda: generate_uid(prefix="2.25."))

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = self.birth_date
        ds.PatientSex = self.sex
        if self.weight_kg is not None:
            ds.PatientWeight = str(self.weight_kg)
        ds.AccessionNumber = self.accession
        ds.ReferringPhysicianName = self.referring
        ds.RequestedProcedureID = self.procedure_id
        ds.RequestedProcedureDescription = self.procedure_description
        code = Dataset()
        code.CodeValue = self.procedure_code
        code.CodingSchemeDesignator = self.procedure_scheme
        code.CodeMeaning = self.procedure_meaning
        ds.RequestedProcedureCodeSequence = [code]
        ds.StudyInstanceUID = self.study_uid
        sps = Dataset()
        sps.Modality = self.modality
        sps.ScheduledStationAETitle = self.station_ae
        sps.ScheduledProcedureStepStartDate = self.date.strftime("%Y%m%d")
        sps.ScheduledProcedureStepStartTime = self.time
        sps.ScheduledProcedureStepID = self.sps_id
        sps.ScheduledProcedureStepDescription = self.sps_description
        sps.ScheduledPerformingPhysicianName = ""
        ds.ScheduledProcedureStepSequence = [sps]
        return ds


@dataclass
class WorklistPeer:
    """A running ``wlmscpfs``; :meth:`add` writes an entry it serves from the next query."""

    port: int
    folder: Path
    ae: str = WORKLIST_AE
    host: str = "127.0.0.1"

    def add(self, entry: Entry) -> Path:
        ds = entry.dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # dcmtk's worklist files
        meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = self.folder / self.ae / f"{entry.accession}.wl"
        ds.save_as(path, enforce_file_format=True)
        return path

    def room_yaml(self, base: str, *, ae_title: str = "FLUORO1", procedures: str = "") -> str:
        """``base`` (a room file's text) with this worklist in its ``dicom:`` section."""
        text = base.rstrip() + (
            f"\n  dicom:\n    ae_title: {ae_title}\n"
            f"    worklist: {{ae: {self.ae}, host: {self.host}, port: {self.port}, timeout_s: 5}}\n"
        )
        return text + (f"  procedures:\n{procedures}" if procedures else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wlmscpfs exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"wlmscpfs did not listen on {port}")


@pytest.fixture
def worklist_peer(tmp_path: Path) -> Iterator[WorklistPeer]:
    """A private ``wlmscpfs`` on a free loopback port with an empty worklist."""
    exe = shutil.which("wlmscpfs")
    if exe is None:  # the machine's dcmtk is a stated prerequisite of these tests
        pytest.fail("wlmscpfs (dcmtk) is not installed")
    folder = tmp_path / "worklist-db"
    (folder / WORKLIST_AE).mkdir(parents=True)
    (folder / WORKLIST_AE / "lockfile").touch()
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-dfp", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        yield WorklistPeer(port, folder)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the CLI as these tests call it -------------------------------------------------------------
def fluoroctl(*argv: str) -> int:
    """``scheduler.cli.main(argv)`` in this process (exit code; output through capsys)."""
    from scheduler import cli

    return cli.main(list(argv))
