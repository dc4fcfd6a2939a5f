"""Taking a calibration from the room's C-arm (``fluoroctl calibrate``, or an exam on a
simulator whose room has none)."""

from __future__ import annotations

import datetime as dt

from drivers import CArm

from .calibration import ModeCalibration, RoomCalibration, calibrate_mode

#: Frames averaged per map: the maps' own noise stays 4× below one frame's.
DARK_FRAMES = 16
FLAT_FRAMES = 16


async def acquire_calibration(
    carm: CArm,
    now: dt.datetime,
    *,
    dark_frames: int = DARK_FRAMES,
    flat_frames: int = FLAT_FRAMES,
) -> RoomCalibration:
    """Dark, then flat frames in every panel mode of ``carm``, made into maps.

    ``ValueError`` if the C-arm declares no panel mode or its frames make no usable map;
    :class:`drivers.DeviceError` if it cannot take calibration frames.
    """
    modes = carm.panel_modes()
    if not modes:
        raise ValueError(f"{carm.name} declares no panel modes to calibrate")
    out: dict[str, ModeCalibration] = {}
    for mode in modes:
        darks = await carm.calibration_frames(mode.name, "dark", dark_frames)
        flats = await carm.calibration_frames(mode.name, "flat", flat_frames)
        out[mode.name] = calibrate_mode(mode, [f.pixels for f in darks], [f.pixels for f in flats])
    return RoomCalibration(carm.name, now, out)
