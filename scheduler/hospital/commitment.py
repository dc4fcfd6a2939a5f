"""Storage Commitment Push Model, SCU side: the request (N-ACTION) and the report we receive.

The PACS answers asynchronously with an N-EVENT-REPORT naming the Transaction UID of our
request, on the N-ACTION's own association or (Orthanc, most archives) on a new association
to our AE: :class:`CommitmentListener` accepts those on ``dicom.outbox.commitment_port``.
Either way :func:`apply_report` writes the outcome into the exam's outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from .outbox import Outbox

log = logging.getLogger(__name__)

#: the well-known SOP Instance of the Storage Commitment Push Model (PS3.4 J.3.5)
PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"
#: N-ACTION Action Type ID: "Request Storage Commitment"
REQUEST_COMMITMENT = 1
#: N-EVENT-REPORT Event Type IDs: all committed / some failed
ALL_COMMITTED, FAILURES_EXIST = 1, 2


def request_dataset(refs: Sequence[tuple[str, str]], transaction_uid: str) -> Dataset:
    """The N-ACTION's Storage Commitment request for (SOP class, SOP instance) ``refs``."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for class_uid, instance_uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = class_uid
        item.ReferencedSOPInstanceUID = instance_uid
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def new_transaction_uid(root: str | None = None) -> str:
    return str(generate_uid(prefix=None if root is None else f"{root}."))


def parse_report(ds: Dataset) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(Transaction UID, committed instance UIDs, (failed instance UID, reason))."""
    committed = [str(i.ReferencedSOPInstanceUID) for i in ds.get("ReferencedSOPSequence", [])]
    failed = [
        (str(i.ReferencedSOPInstanceUID), _reason(i.get("FailureReason")))
        for i in ds.get("FailedSOPSequence", [])
    ]
    return str(ds.TransactionUID), committed, failed


_REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0213: "resource limitation",
    0x0122: "referenced SOP class not supported",
    0x0119: "class/instance conflict",
    0x0131: "duplicate transaction UID",
}


def _reason(code: Any) -> str:
    if code is None:
        return "no reason given"
    value = int(code)
    return f"0x{value:04X} ({_REASONS.get(value, 'unknown reason')})"


def apply_report(folder: Path, ds: Dataset) -> int:
    """Write a received report into ``folder``'s outbox; returns the rows it settled."""
    transaction, committed, failed = parse_report(ds)
    outbox = Outbox.in_folder(folder, create=False)
    try:
        changed = outbox.commitment_reported(transaction, committed, failed, time.time())
    finally:
        outbox.close()
    if failed:
        log.warning(
            "storage commitment: %d object(s) refused (%s); they will be sent again",
            len(failed),
            failed[0][1],
        )
    return changed


def report_handler(folder: Path, on_report: Callable[[], None]) -> Callable[[Any], Any]:
    """An EVT_N_EVENT_REPORT handler for pynetdicom (either association)."""

    def handle(event: Any) -> tuple[int, None]:
        if event.request.AffectedSOPClassUID != StorageCommitmentPushModel:
            return 0x0112, None  # no such SOP instance: not a report we asked for
        try:
            changed = apply_report(folder, event.event_information)
        except Exception:  # a report we cannot read: the request is asked again later
            log.exception("storage commitment report not applied")
            return 0x0110, None
        if changed == 0:
            log.info("storage commitment report for an unknown or settled transaction")
        on_report()
        return 0x0000, None

    return handle


class CommitmentListener:
    """Our AE as the receiver of Storage Commitment reports on their own association."""

    def __init__(
        self, folder: Path, ae_title: str, port: int, on_report: Callable[[], None]
    ) -> None:
        self._ae = AE(ae_title=ae_title)
        # The PACS is the SOP class's SCP on this association: accept the SCP role it asks for.
        self._ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        self._port = port
        self._handlers: list[Any] = [(evt.EVT_N_EVENT_REPORT, report_handler(folder, on_report))]
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> str | None:
        """Listen; returns why not (the port is taken) instead of raising."""
        with self._lock:
            try:
                self._server = self._ae.start_server(
                    ("", self._port), block=False, evt_handlers=self._handlers
                )
            except OSError as exc:
                return f"cannot listen for storage commitment reports on port {self._port}: {exc}"
        return None

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server = None
