"""Room on disk for the exam's record, checked before the exam and before every acquisition.

An exposure whose image cannot be stored irradiates the patient for nothing, so the runner
refuses to acquire when the exam folder's file system has less free space than the image
needs (plus a margin for the journal, summary and contact sheet). The estimate is
conservative: a 1024² 16-bit frame per frame until the detector has delivered one, then the
size of the frames it actually delivers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from drivers import FluoroRequest, Technique

from .protocol import CaptureStep, FluoroStep, Protocol, TomoStep

MIB = 1 << 20
#: bytes of one stored frame before the detector has shown its size (1024² × 16 bit)
DEFAULT_FRAME_BYTES = 1024 * 1024 * 2
#: kept free beyond the images: journal lines, DICOM headers, summary.json, contact sheet
MARGIN_BYTES = 8 * MIB


class StorageFull(Exception):
    """Not enough free space to store what the next acquisition would produce."""


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def frames_of(step: CaptureStep | FluoroStep | TomoStep) -> int:
    """How many frames the step stores (tomosynthesis: one image per layer)."""
    if isinstance(step, FluoroStep):
        technique = Technique(kv=step.technique.kv, ma=step.technique.ma, exposure_ms=1.0)
        return FluoroRequest(step.pulse_rate_hz, step.duration_s, technique).n_pulses
    if isinstance(step, TomoStep):
        return len(step.layer_heights_mm)
    return 1


def exam_bytes(protocol: Protocol, frame_bytes: int = DEFAULT_FRAME_BYTES) -> int:
    """Bytes the whole protocol's images take at ``frame_bytes`` a frame, plus the margin."""
    frames = sum(
        frames_of(s) for s in protocol.steps if isinstance(s, CaptureStep | FluoroStep | TomoStep)
    )
    return frames * frame_bytes + MARGIN_BYTES


def check_space(path: Path, needed: int, what: str) -> None:
    """Raise :class:`StorageFull` unless ``path``'s file system has ``needed`` bytes free."""
    free = free_bytes(path)
    if free < needed:
        raise StorageFull(
            f"not enough free space in {path} for {what}: {free / MIB:.1f} MiB free, "
            f"{needed / MIB:.1f} MiB needed"
        )
