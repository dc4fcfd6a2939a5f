"""Pixel data: the stored (log, inverted, windowed, 12-bit) image and its VOI LUT."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from ..records import CaptureRecord
from .dicom_values import _ds
from .display import DisplayWindow, collimated_mask, compute_window, to_presentation

BITS_STORED = 12
_FRAME_TIME = Tag(0x0018, 0x1063)


def _pixels(ds: Dataset, record: CaptureRecord, multi_frame: bool) -> tuple[int, int, float]:
    frames = record.frames
    shape = frames[0].pixels.shape
    if len(shape) != 2 or any(f.pixels.shape != shape for f in frames):
        raise ValueError(f"{record.step_id}: frames must be 2-D and of one shape")
    rows, cols = int(shape[0]), int(shape[1])
    middle = frames[len(frames) // 2]
    mask = collimated_mask(
        (rows, cols),
        middle.pixel_spacing_mm,
        record.collimation.width_mm,
        record.collimation.height_mm,
    )
    window = compute_window(middle.pixels, exposed_mask=mask)
    stack = np.empty((len(frames), rows, cols), dtype="<u2")
    for i, frame in enumerate(frames):
        stack[i] = to_presentation(frame.pixels, BITS_STORED, window=window)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    # Log-transformed and inverted: a higher value means less X-ray intensity. LOG requires a
    # Modality LUT back to (approximately) linear intensity; for XA/XRF it is not for display.
    ds.PixelIntensityRelationship = "LOG"
    ds.ModalityLUTSequence = DicomSequence([_intensity_lut(window)])
    ds.AcquisitionDeviceProcessingDescription = "LOG, INVERTED, WINDOWED, UNSHARP MASK"
    top = 1 << BITS_STORED
    ds.WindowCenter = _ds(top / 2)
    ds.WindowWidth = _ds(top)
    ds.WindowCenterWidthExplanation = "FULL RANGE"
    if multi_frame:
        ds.NumberOfFrames = len(frames)
        ds.FrameIncrementPointer = _FRAME_TIME
    ds.PixelData = stack.tobytes()
    return rows, cols, middle.pixel_spacing_mm


def _intensity_lut(window: DisplayWindow) -> Dataset:
    """Modality LUT: stored value → X-ray intensity above the dark offset, relative units.

    The LUT inverts the log/window mapping (not the unsharp mask), scaled so stored value 0
    (least attenuation) maps to 65535: dciodvfy wants 16-bit entries to use the 16th bit.
    """
    size = 1 << BITS_STORED
    v = np.arange(size, dtype=np.float64) / (size - 1)
    rel_log = -v * (window.log_high - window.log_low)  # log(I / I at stored value 0)
    lut = np.clip(np.rint(65535.0 * np.exp(rel_log)), 0, 65535).astype("<u2")
    item = Dataset()
    item.LUTDescriptor = [size, 0, 16]
    item.LUTExplanation = "RELATIVE X-RAY INTENSITY"
    item.ModalityLUTType = "US"  # unspecified units
    item.add_new(Tag(0x0028, 0x3006), "OW", lut.tobytes())
    return item
