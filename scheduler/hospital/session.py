"""The outbox around a run: the exam's objects in, the background sender, the end.

:func:`attach` (for a room with ``dicom.destinations`` or ``dicom.mpps``) subscribes to the
exam's event bus, inline: each ``capture`` event's file is queued before the next event is
handled (its file is already fsynced, decision 0007), and the first capture queues the MPPS
N-CREATE. A background thread sends while the exam runs.

:meth:`PacsSession.finish`, after the exam's outputs are written: queues every ``.dcm`` of
the folder not queued yet (the dose SR, an image whose event was lost in a crash), the MPPS
N-SET, waits up to ``dicom.outbox.wait_s`` for delivery, stops the sender and adds the
``dicom`` section to the summary. What is left stays queued for ``fluoroctl dicom flush``;
the run's exit code does not depend on PACS.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from ..exam.bus import EventBus, Recorded
from ..exam.events import Captured
from ..records import ExamInfo
from ..room import Room
from ..summary import write_summary
from . import mpps
from .config import DicomConfig
from .lock import SenderLock
from .outbox import Outbox
from .outbox_db import destination_name
from .queueing import enqueue_folder, message_headers, settings_of
from .report import dicom_section

log = logging.getLogger(__name__)


class PacsSession:
    def __init__(self, dicom: DicomConfig, exam: ExamInfo, out_dir: Path) -> None:
        self.dicom = dicom
        self.exam = exam
        self.out_dir = out_dir
        self.settings = settings_of(dicom)
        self.outbox = Outbox.in_folder(out_dir)
        self.outbox.add_destinations(dicom.destinations, dicom.mpps)
        self.outbox.set_meta(
            calling_ae=dicom.ae_title,
            study_uid=exam.study_instance_uid,
            settings=self.settings.model_dump_json(),
        )
        from .sender import Sender  # pynetdicom only for rooms that use the network

        self.sender = Sender(out_dir, self.settings, dicom.ae_title)
        self._mpps_uid = mpps.mpps_uid(exam)
        self.lock = SenderLock(out_dir)

    def start(self) -> None:
        """Send in the background (unless a ``dicom flush`` holds the folder's outbox)."""
        if self.lock.acquire():
            self.sender.start()
        else:
            log.warning(
                "DICOM: another process (%s) is sending %s; objects are queued only",
                self.lock.holder(),
                self.out_dir,
            )

    # -- during the exam ------------------------------------------------------------------------
    def __call__(self, recorded: Recorded) -> None:
        event = recorded.event
        if not isinstance(event, Captured):
            return
        enqueue_folder(
            self.outbox, self.out_dir, [event.file], study_uid=self.exam.study_instance_uid
        )
        self._mpps_started(dt.datetime.fromisoformat(recorded.wall))
        self.sender.wake()

    def _mpps_started(self, when: dt.datetime) -> None:
        peer = self.dicom.mpps
        if peer is None:
            return
        key = f"n-create:{self._mpps_uid}"
        if self.outbox.has_message(key):
            return
        ds = mpps.in_progress(self.exam, self.dicom.ae_title, when.astimezone())
        self.outbox.enqueue_message(
            key,
            destination_name(peer),
            "n-create",
            mpps.SOP_CLASS,
            self._mpps_uid,
            ds.to_json_dict(),
        )

    # -- the end --------------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
        """Queue what the folder holds and the MPPS end, wait (bounded), stop the sender;
        returns the summary with its ``dicom`` section, also written to ``summary.json``.
        Blocks: run it in a thread."""
        try:
            enqueue_folder(self.outbox, self.out_dir, study_uid=self.exam.study_instance_uid)
            self._mpps_final(summary)
            self.sender.wake()
            left = self._wait(self.settings.wait_s if wait else 0.0)
            if left:
                log.warning(
                    "DICOM: %d deliveries still queued (PACS or MPPS peer not reached); they "
                    "stay in the exam folder: fluoroctl dicom flush %s",
                    left,
                    self.out_dir,
                )
            summary = {**summary, "dicom": dicom_section(self.outbox)}
            try:
                write_summary(summary, self.out_dir / "summary.json")
            except OSError as exc:
                log.error("summary.json not written with its dicom section: %s", exc)
        finally:
            self.stop()
        return summary

    def stop(self) -> None:
        """Stop the background sender (what is queued stays queued); idempotent."""
        self.sender.stop()
        self.lock.release()
        self.outbox.close()

    def _wait(self, timeout_s: float) -> int:
        """Let the background sender work until all is delivered or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        left = self.outbox.undelivered()
        while left and time.monotonic() < deadline:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))
            left = self.outbox.undelivered()
        return left

    def _mpps_final(self, summary: dict[str, Any]) -> None:
        peer = self.dicom.mpps
        if peer is None:
            return
        headers = message_headers(self.outbox, self.out_dir)
        if not headers:
            return  # no exposure, no procedure step was started
        first = dt.datetime.now().astimezone()
        self._mpps_started(first)  # its capture event was lost in a crash: created now
        key = f"n-set:{self._mpps_uid}:final"
        ds = mpps.final(summary, headers, dt.datetime.now().astimezone())
        self.outbox.enqueue_message(
            key, destination_name(peer), "n-set", mpps.SOP_CLASS, self._mpps_uid, ds.to_json_dict()
        )


def attach(bus: EventBus, room: Room, exam: ExamInfo, out_dir: Path) -> PacsSession | None:
    """Queue the exam's objects and MPPS for the room's peers, sending in the background;
    None (nothing installed) for a room without ``dicom.destinations`` and ``dicom.mpps``."""
    dicom = room.dicom
    if not dicom.destinations and dicom.mpps is None:
        return None
    session = PacsSession(dicom, exam, out_dir)
    bus.subscribe(session, inline=True)
    session.start()
    return session
