"""Where an acquisition's images go before its ``capture`` line is written.

The image store sits on the durable path, not behind the event stream: decision 0007 says a
capture is journaled only once its image is on disk, so the capture handler stores the
image, *then* emits :class:`~scheduler.exam.events.Captured`. Other writers (a PACS queue,
a dose report) subscribe to that event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..imaging.chain import HostImageChain
from ..outputs import write_capture
from ..outputs.dicom_series import SeriesIndex
from ..records import CaptureRecord, ExamInfo


class ImageStore(Protocol):
    def write(self, record: CaptureRecord) -> Path:
        """Store ``record``'s image durably and return its file (``OSError`` if it cannot)."""
        ...


class DicomStore:
    """One DICOM file per image in the exam folder, linked into place (never replaced).

    ``chain``: the room's host image chain, which the capture handler runs the frames
    through before they are written (:func:`scheduler.exam.images.record_capture`).
    """

    def __init__(self, exam: ExamInfo, out_dir: Path, chain: HostImageChain | None = None) -> None:
        self._exam = exam
        self._out_dir = out_dir
        self.chain = chain
        self._series = SeriesIndex(out_dir, exam.study_instance_uid)

    def write(self, record: CaptureRecord) -> Path:
        return write_capture(record, self._exam, self._out_dir, index=self._series)

    def write_for_processing(self, record: CaptureRecord) -> Path:
        """The linear "for processing" image of an acquisition (its own instance)."""
        return write_capture(
            record, self._exam, self._out_dir, for_processing=True, index=self._series
        )
