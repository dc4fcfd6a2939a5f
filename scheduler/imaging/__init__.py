"""The host image chain: what happens to a detector frame between the panel and the archive.

Calibration (:mod:`.calibration`) turns dark and flat frames into per-mode maps; correction
(:mod:`.correct`) applies offset, gain and defect-pixel correction on the frame's own
dtype; fluoroscopy runs are filtered recursively (:mod:`.temporal`) and their last frame is
the last-image-hold; :mod:`.chain` puts these together for one stored image. The display
mapping (log, window, edge enhancement) stays in :mod:`scheduler.outputs.display`.
See docs/image-chain.md.
"""

from __future__ import annotations

from .calibration import CalibrationError, ModeCalibration, RoomCalibration, calibrate_mode
from .chain import HostImageChain, ImageChainOptions
from .correct import FrameCorrector
from .temporal import RecursiveFilter, variance_factor

__all__ = [
    "CalibrationError",
    "FrameCorrector",
    "HostImageChain",
    "ImageChainOptions",
    "ModeCalibration",
    "RecursiveFilter",
    "RoomCalibration",
    "calibrate_mode",
    "variance_factor",
]
