"""Real DICOM peers for the hospital-integration tests, started on free loopback ports.

Fixtures (each test gets its own peer, torn down after it):

* ``orthanc`` → :class:`Orthanc`: /usr/sbin/Orthanc with a generated configuration and a
  temporary storage folder. ``orthanc.ae`` / ``orthanc.dicom_port`` / ``orthanc.http_port``;
  :meth:`Orthanc.count` (``"instances"``, ``"series"``, ``"studies"``, ``"patients"``),
  :meth:`Orthanc.instance_uids`, :meth:`Orthanc.tags` (simplified tags of one instance),
  :meth:`Orthanc.get` (any REST path); :meth:`Orthanc.stop` / :meth:`Orthanc.start` for
  PACS-down tests (the storage survives a restart). It knows one modality, our AE title
  :data:`MODALITY_AE` at :attr:`Orthanc.modality_port`: Orthanc sends Storage Commitment
  reports there, so a room that wants them sets ``dicom.outbox.commitment_port`` to it.
  ``orthanc_stopped`` is the same peer, configured but not started.
* ``mpps_scp`` → :class:`MppsScp`: a pynetdicom MPPS SCP in a thread that records every
  N-CREATE and N-SET (``.log``: (kind, answered status) in arrival order; ``.creates``,
  ``.sets``: (SOP Instance UID, dataset)) and keeps the instances' merged state
  (``.instances``, :meth:`MppsScp.status_of`), answering as a RIS would (0x0111 duplicate,
  0x0112 N-SET before N-CREATE, 0xA710 already final); ``.refuse_next`` forces answers.
  ``MppsScp(port=...)`` starts one on a chosen port (a RIS that comes up later).
* :func:`free_port`, :func:`dicom_room` (a room file: the in-process simulator with a
  ``dicom:`` section pointing at given peers).

Tests here that start Orthanc take a few seconds of wall time: Orthanc's start-up.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydicom import Dataset

ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
ROOT = Path(__file__).resolve().parents[2]
#: the calling AE title the test rooms use (Orthanc knows it as a modality)
MODALITY_AE = "FLUOROTEST"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Orthanc:
    """One Orthanc process with its own config, index and storage under ``base``."""

    ae = "ORTHANC"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modality_port = free_port()
        self.config = base / "orthanc.json"
        self.log = base / "orthanc.log"
        (base / "storage").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            json.dumps(
                {
                    "Name": "fluoroctl-test",
                    "StorageDirectory": str(base / "storage"),
                    "IndexDirectory": str(base / "storage"),
                    "DicomAet": self.ae,
                    "DicomPort": self.dicom_port,
                    "HttpPort": self.http_port,
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": False,
                    "HttpServerEnabled": True,
                    "DicomServerEnabled": True,
                    "DicomCheckCalledAet": False,
                    "DicomAlwaysAllowStore": True,
                    "DicomModalities": {
                        "fluoro": [MODALITY_AE, "127.0.0.1", self.modality_port],
                    },
                    "Plugins": [],
                    "SaveJobs": False,
                    "StorageCompression": False,
                    "ConcurrentJobs": 1,
                }
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and wait until the REST API answers."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [ORTHANC_BIN, str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start-up; see {self.log}")
            try:
                self.get("/system")
                if _port_open(self.dicom_port):
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s; see {self.log}")

    def stop(self) -> None:
        """Stop Orthanc (its storage stays for the next :meth:`start`)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.loads(reply.read())

    def count(self, level: str) -> int:
        """How many ``patients``, ``studies``, ``series`` or ``instances`` Orthanc holds."""
        return len(self.get(f"/{level}"))

    def instance_ids(self) -> list[str]:
        ids: list[str] = self.get("/instances")
        return ids

    def tags(self, instance_id: str) -> dict[str, Any]:
        """The simplified tags (``{"PatientName": ...}``) of one instance."""
        tags: dict[str, Any] = self.get(f"/instances/{instance_id}/simplified-tags")
        return tags

    def instance_uids(self) -> list[str]:
        """The SOP Instance UIDs Orthanc holds (duplicates would show twice)."""
        return [self.tags(i)["SOPInstanceUID"] for i in self.instance_ids()]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def orthanc_stopped(tmp_path: Path) -> Iterator[Orthanc]:
    """An Orthanc configured on free ports, not started (a PACS that is down)."""
    if not Path(ORTHANC_BIN).exists():
        pytest.fail(f"Orthanc is not installed ({ORTHANC_BIN}): apt-get install orthanc")
    peer = Orthanc(tmp_path / "orthanc")
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def orthanc(orthanc_stopped: Orthanc) -> Orthanc:
    """A running Orthanc on free loopback ports with empty storage."""
    orthanc_stopped.start()
    return orthanc_stopped


class MppsScp:
    """A pynetdicom MPPS SCP recording what it receives (a RIS stand-in)."""

    ae = "RIS"

    def __init__(self, port: int | None = None) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            ModalityPerformedProcedureStep,
        )

        self.port = port or free_port()
        #: every message in arrival order with the status it was answered
        self.log: list[tuple[str, int]] = []
        self.creates: list[tuple[str, Dataset]] = []
        self.sets: list[tuple[str, Dataset]] = []
        self.instances: dict[str, Dataset] = {}
        #: force the next answers (a status code per message) before the usual logic
        self.refuse_next: list[int] = []
        self._lock = threading.Lock()
        ae = AE(ae_title=self.ae)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_N_CREATE, self._on_create),
                (evt.EVT_N_SET, self._on_set),
            ],
        )

    def _on_create(self, event: Any) -> tuple[int, Dataset | None]:
        uid = str(event.request.AffectedSOPInstanceUID)
        ds = event.attribute_list
        with self._lock:
            status = self._create(uid, ds)
            self.log.append(("n-create", status))
        return status, ds if status == 0 else None

    def _create(self, uid: str, ds: Dataset) -> int:
        if self.refuse_next:
            return self.refuse_next.pop(0)
        self.creates.append((uid, ds))
        if uid in self.instances:
            return 0x0111  # duplicate SOP instance
        if ds.get("PerformedProcedureStepStatus") != "IN PROGRESS":
            return 0x0106  # invalid attribute value
        self.instances[uid] = copy.deepcopy(ds)  # N-SETs change this copy, not the record
        return 0x0000

    def _on_set(self, event: Any) -> tuple[int, Dataset | None]:
        uid = str(event.request.RequestedSOPInstanceUID)
        mods = event.modification_list
        with self._lock:
            status = self._set(uid, mods)
            self.log.append(("n-set", status))
        return status, self.instances.get(uid) if status == 0 else None

    def _set(self, uid: str, mods: Dataset) -> int:
        if self.refuse_next:
            return self.refuse_next.pop(0)
        self.sets.append((uid, mods))
        current = self.instances.get(uid)
        if current is None:
            return 0x0112  # no such SOP instance: an N-SET before its N-CREATE
        if current.PerformedProcedureStepStatus != "IN PROGRESS":
            return 0xA710  # may no longer be updated
        for elem in mods:
            current[elem.tag] = elem
        return 0x0000

    def status_of(self, uid: str) -> str | None:
        ds = self.instances.get(uid)
        return None if ds is None else str(ds.PerformedProcedureStepStatus)

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def mpps_scp() -> Iterator[MppsScp]:
    scp = MppsScp()
    try:
        yield scp
    finally:
        scp.stop()


def dicom_room(
    path: Path,
    *,
    destinations: list[dict[str, Any]] | None = None,
    mpps: dict[str, Any] | None = None,
    outbox: dict[str, Any] | None = None,
    ae_title: str = MODALITY_AE,
) -> Path:
    """Write the shipped simulator room with a ``dicom:`` section to ``path``; returns it."""
    room = yaml.safe_load((ROOT / "configs/rooms/simulator.yaml").read_text())
    dicom: dict[str, Any] = {"ae_title": ae_title, "destinations": destinations or []}
    if mpps is not None:
        dicom["mpps"] = mpps
    if outbox is not None:
        dicom["outbox"] = outbox
    room["room"]["dicom"] = dicom
    path.write_text(yaml.safe_dump(room))
    return path


def orthanc_destination(peer: Orthanc, *, commitment: bool = False) -> dict[str, Any]:
    return {
        "ae": peer.ae,
        "host": "127.0.0.1",
        "port": peer.dicom_port,
        "commitment": commitment,
        "timeout_s": 5,
    }


# The Modality Worklist SCP (dcmtk's wlmscpfs) every hospital test may ask for.
from tests.hospital.worklist_peer import worklist_peer  # noqa: E402, F401
