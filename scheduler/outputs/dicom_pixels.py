"""Pixel data: the stored, display-ready (log, inverted, windowed, 12-bit) image and its
VOI window."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydicom.tag import Tag

from ..records import CaptureRecord
from .dicom_attrs import ImageAttributes
from .dicom_values import _ds
from .display import collimated_box, compute_window, to_presentation
from .percentiles import percentiles

BITS_STORED = 12
_FRAME_TIME = Tag(0x0018, 0x1063)
#: percentiles of the field's stored values that bound the default VOI window
_WINDOW_PCT = (0.25, 99.75)
_WINDOW_SAMPLES = 262144


def _pixels(
    ds: ImageAttributes, record: CaptureRecord, multi_frame: bool, for_processing: bool = False
) -> tuple[int, int, float]:
    frames = record.frames
    shape = frames[0].pixels.shape
    if len(shape) != 2 or any(f.pixels.shape != shape for f in frames):
        raise ValueError(f"{record.step_id}: frames must be 2-D and of one shape")
    rows, cols = int(shape[0]), int(shape[1])
    middle = frames[len(frames) // 2]
    field = collimated_box(
        (rows, cols),
        middle.pixel_spacing_mm,
        record.collimation.width_mm,
        record.collimation.height_mm,
    )
    if for_processing:
        return _linear_pixels(ds, record, multi_frame, field)
    mask = np.zeros((rows, cols), dtype=np.bool_)
    mask[field] = True
    window = compute_window(middle.pixels, exposed_mask=mask)
    stack = np.empty((len(frames), rows, cols), dtype="<u2")
    for i, frame in enumerate(frames):
        to_presentation(frame.pixels, BITS_STORED, window=window, out=stack[i])

    ds.SamplesPerPixel = 1
    # Dense (bone, iodine) = high value = white, as a radiograph is read.
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    # The stored values are already the display mapping (log, inverted, windowed, unsharp
    # mask): DISP, "adapted for display and ready to be displayed" (PS3.3 C.8.7.1.1). No
    # Modality LUT: with LOG one would be required, and pipelines that apply it (pydicom,
    # most web viewers) would then window linear intensities and show a white field.
    ds.PixelIntensityRelationship = "DISP"
    ds.AcquisitionDeviceProcessingDescription = "LOG, INVERTED, WINDOWED, UNSHARP MASK"
    low, high = _anatomy_range(stack[len(frames) // 2], field)
    top = 1 << BITS_STORED
    # First window: the anatomy (what viewers apply by default); second: every stored value.
    ds.WindowCenter = [_ds((low + high + 1) / 2.0), _ds(top / 2)]
    ds.WindowWidth = [_ds(high - low + 1), _ds(top)]
    ds.WindowCenterWidthExplanation = ["ANATOMY", "FULL RANGE"]
    if multi_frame:
        ds.NumberOfFrames = len(frames)
        ds.FrameIncrementPointer = _FRAME_TIME
    ds.PixelData = stack.tobytes()
    return rows, cols, middle.pixel_spacing_mm


def _anatomy_range(image: npt.NDArray[np.uint16], field: tuple[slice, slice]) -> tuple[int, int]:
    """Stored values bounding the collimated field's content (robust percentiles).

    The field's extremes stay just inside the window, so little is clipped to white or black
    while the grey scale is spent on the anatomy, not on the collimator shadow.
    """
    # Every step-th pixel of the frame (as a strided view: selecting the field by a mask
    # copied the frame, on the write's critical path), those inside the field.
    step = max(1, math.isqrt(image.size // _WINDOW_SAMPLES))
    rows, cols = field
    first_row, first_col = -(-rows.start // step) * step, -(-cols.start // step) * step
    values = image[first_row : rows.stop : step, first_col : cols.stop : step]
    if values.size == 0:
        values = image[::step, ::step]
    low, high = percentiles(values, _WINDOW_PCT)
    lo, hi = math.floor(float(low)), math.ceil(float(high))
    return lo, max(hi, lo + 1)


def _linear_pixels(
    ds: ImageAttributes, record: CaptureRecord, multi_frame: bool, field: tuple[slice, slice]
) -> tuple[int, int, float]:
    """The "for processing" image: the corrected detector values, linear in dose, 16 bits
    (more radiation, higher value: MONOCHROME2 shows it as the panel saw it)."""
    frames = record.frames
    rows, cols = (int(n) for n in frames[0].pixels.shape)
    stack = np.stack([np.asarray(f.pixels, dtype="<u2") for f in frames])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.AcquisitionDeviceProcessingDescription = "OFFSET, GAIN, DEFECT CORRECTED"
    low, high = _anatomy_range(stack[len(frames) // 2], field)
    ds.WindowCenter = _ds((low + high + 1) / 2.0)
    ds.WindowWidth = _ds(high - low + 1)
    if multi_frame:
        ds.NumberOfFrames = len(frames)
        ds.FrameIncrementPointer = _FRAME_TIME
    ds.PixelData = stack.tobytes()
    return rows, cols, frames[len(frames) // 2].pixel_spacing_mm
